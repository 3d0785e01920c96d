"""Caption coding with a causal language model: LM next-token probabilities drive a range coder.

Two codecs share the algorithm below (docs/text-coding.md): codec 2 (:class:`IntTextCoder`, the default)
takes its integer frequency tables from the integer-exact model of :mod:`semzip.models.intlm`, so its files
decode on any machine, and codes captions in batches (which cannot change a bit); codec 1
(:class:`TextCoder`) takes them from a float model in a deterministic mode (step 3), so its files decode
only where the float model computes the writer's numbers, and is kept to read them.

Algorithm (every constant below is part of it):

1. Mode. The text is tokenized with the model's tokenizer (no special tokens added). If
   ``decode(tokens) == text`` exactly (codec 2: the decoder's own byte table spells the text) and no token is
   the terminator, the tokens are coded (mode 0 when
   the text has no newline, terminated by the newline token; mode 1 otherwise, terminated by the
   tokenizer's EOS token). Otherwise the UTF-8 bytes are coded as the tokenizer's 256 byte-level tokens
   (mode 2, EOS-terminated). Bytes that have no token (SmolLM2's GGUF vocabulary lacks a few control
   characters, which its tokenizer drops) make the text fall back to raw bytes, coded uniformly with an
   end symbol (mode 3, 8 bits per byte, no model). So every string round-trips exactly. The mode is the
   first coded symbol, under a fixed table where mode 0 costs 0.001 bit.
2. Context. The model reads a fixed few-shot prompt (:data:`PROMPT_V1`: an instruction and eight
   hand-written captions, one per line) once; its KV cache is reused for every caption. Then one forward
   pass per token, in the same order on both sides.
3. Integer frequencies. Codec 2: the integer model's tables (:func:`semzip.models.intlm.freqs_from_logits`).
   Codec 1 (the documented deterministic step after the float model, :func:`logits_to_freqs`): float32 logits ->
   float64, minus their max, ``exp``, divided by the sum: ``p``; ``f = floor(p * (2**24 - V)) + 1``
   (every token >= 1); the ``2**24 - sum(f)`` units left over go to the first most probable token. The
   table is coded exactly by constriction through :class:`semzip.entropy.CategoricalModel` (precision 24).
4. Bytes. The range coder's 32-bit words are written big-endian and cut to the shortest prefix (or that
   prefix with its last byte plus one) that still decodes to the same symbols when the decoder pads with
   zeros: a caption costs about ``ceil((bits + 1) / 8)`` bytes instead of whole words.
5. Guards. The decoder stops with EntropyDecodeError when the decoded tokens' information content
   (a lower bound in 1/64 bit, integer arithmetic) exceeds what the payload can hold, when more tokens
   than the model's context would be needed: corrupt data never runs for long.
   Payloads carry no checksum: :mod:`semzip.format.compact` adds a 16-bit check over the decoded text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semzip.entropy import CategoricalModel, Decoder, Encoder
from semzip.errors import (
    CorruptedSectionError,
    EntropyDecodeError,
    InvalidInputError,
    ModelMismatchError,
    SemzipError,
)
from semzip.format import compact

__all__ = ["CODEC_ID", "INT_CODEC_ID", "PRECISION", "PROMPT_V1", "IntTextCoder", "TextCoder", "logits_to_freqs"]

CODEC_ID = 1
PRECISION = 24
PROMPT_V1 = (
    "Short image captions, one per line:\n"
    "A dog lying on a wooden floor next to a red ball.\n"
    "Two people walking down a busy city street at night.\n"
    "A plate of rice and vegetables on a white table.\n"
    "A man riding a bike past a row of parked cars.\n"
    "A small kitchen with a stove, a sink and white cabinets.\n"
    "A group of zebras standing in a grassy field.\n"
    "a woman holding an umbrella in the rain\n"
    "There is a red bus stopped at the side of the road.\n"
)
MODE_LINE, MODE_TEXT, MODE_BYTES, MODE_RAW = 0, 1, 2, 3
_MODE_MODEL = CategoricalModel(np.array([65440, 32, 32, 32], dtype=np.uint32), 16)
_RAW_END = 256  # raw mode: bytes are uniform over 257 symbols, 256 ends the text
_COST_SCALE = 64  # information is accounted in 1/64 bit
_SLACK_BITS = 32  # range-coder flush and trimmed zero bytes


def logits_to_freqs(logits: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Integer frequencies (int64, each >= 1, summing to ``2**precision``) from next-token logits."""
    x = np.asarray(logits, dtype=np.float32).astype(np.float64)
    if not np.isfinite(x).all():
        raise EntropyDecodeError("the language model produced non-finite logits")
    x -= x.max()
    p = np.exp(x)
    p /= p.sum()
    n = x.size
    f = np.floor(p * float(2**precision - n)).astype(np.int64) + 1
    f[int(np.argmax(f))] += 2**precision - int(f.sum())
    return f


def _cost(freq: int, precision: int = PRECISION) -> int:
    """A lower bound of ``-log2(freq / 2**precision)`` in 1/64 bit, exact integer arithmetic."""
    return _COST_SCALE * precision - (int(freq) ** _COST_SCALE).bit_length()


def _byte_tokens(tokenizer: Any) -> list[int | None]:
    """Token id of each byte value (None where the vocabulary has none), byte-level BPE or ``<0xNN>``."""
    from semzip.models.intlm.convert import byte_level_chars

    chars = dict(enumerate(byte_level_chars()))
    vocab = tokenizer.get_vocab()
    best: list[int | None] = [None] * 256
    for spell in (lambda b: chars[b], lambda b: f"<0x{b:02X}>"):
        ids = [vocab.get(spell(b)) for b in range(256)]
        if sum(i is not None for i in ids) > sum(i is not None for i in best):
            best = [None if i is None else int(i) for i in ids]
    return best


def _set_coder_tables(coder: Any, lm: Any, byte_ids: list[int | None], prompt: str) -> None:
    """Byte tokens, the context left after the prompt, and the coder's identity (the model's fingerprint, and
    the prompt when it is not the codec's own): shared by both codecs."""
    coder.byte_ids = byte_ids
    coder._byte_of = {t: b for b, t in enumerate(byte_ids) if t is not None and t != coder.eos_id}
    coder.max_tokens = max(1, lm.max_positions - len(coder.prompt_ids) - 1)
    coder.adapted = getattr(lm, "adapter", None) is not None  # recorded in single-caption files (layout 3)
    if prompt == PROMPT_V1:
        coder.fingerprint = lm.fingerprint
    else:
        h = hashlib.sha256(f"{lm.fingerprint}\x00{prompt}".encode())
        coder.fingerprint = h.hexdigest()[: len(lm.fingerprint)]


def _le_to_be(le: bytes) -> bytes:
    """semzip.entropy's stream bytes (little-endian words, trailing zeros cut) as big-endian words."""
    le = le + b"\x00" * (-len(le) % 4)
    return np.frombuffer(le, dtype="<u4").astype(">u4").tobytes()


def _be_to_le(be: bytes) -> bytes:
    """A (shortened) big-endian payload, zero-padded to whole words, as semzip.entropy's stream bytes."""
    be = be + b"\x00" * (-len(be) % 4)
    return np.frombuffer(be, dtype=">u4").astype("<u4").tobytes()


def _decodes_to(payload: bytes, mode: int, seq: Sequence[int], models: Sequence[CategoricalModel]) -> bool:
    """True if ``payload`` decodes (zero-padded) to ``mode, seq`` under ``models``."""
    try:
        dec = Decoder(_be_to_le(payload))
        if int(dec.decode_categorical(_MODE_MODEL, 1)[0]) != mode:
            return False
        for t, m in zip(seq, models, strict=True):
            if int(dec.decode_categorical(m, 1)[0]) != t:
                return False
    except EntropyDecodeError:
        return False
    return True


def _shortest(be: bytes, mode: int, seq: Sequence[int], models: Sequence[CategoricalModel]) -> bytes:
    """The shortest prefix of ``be`` (or that prefix plus one in its last byte) that still decodes the same.

    The decoder pads with zero bytes, so any point inside the range coder's final interval will do; the
    tables are known here, so candidates are checked by decoding without the language model.
    """
    be = be.rstrip(b"\x00")
    for n in range(len(be) + 1):
        head = be[:n]
        cands = [head]
        if n:
            v = int.from_bytes(head, "big") + 1
            if v < 256**n:
                cands.append(v.to_bytes(n, "big"))
        for cand in cands:
            cand = cand.rstrip(b"\x00")
            if _decodes_to(cand, mode, seq, models):
                return cand
    return be


class _CaptionFiles:
    """What both codecs share: the choice of mode (step 1 of the algorithm) and the ``.smzc`` layouts
    (:mod:`semzip.format.compact`) on top of ``compress_many``/``decompress_many``."""

    codec_id: int
    fingerprint: str
    adapted: bool = False
    newline_id: int
    eos_id: int
    byte_ids: list[int | None]
    _byte_of: dict[int, int]

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _spells(self, ids: list[int], text: str, raw: bytes) -> bool:
        raise NotImplementedError

    def symbols(self, text: str) -> tuple[int, list[int]]:
        """The mode and the token ids coded for ``text`` (terminator excluded): the text's tokens when they
        spell it exactly, else its bytes as byte tokens, else raw bytes."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"text is not valid Unicode (lone surrogate?): {exc}") from None
        ids = self._encode(text)
        mode = MODE_LINE if "\n" not in text else MODE_TEXT
        term = self.newline_id if mode == MODE_LINE else self.eos_id
        if term not in ids and self._spells(ids, text, raw):
            return mode, ids
        byte_ids = [self.byte_ids[b] for b in raw]
        if all(t is not None and t in self._byte_of for t in byte_ids):
            return MODE_BYTES, [int(t) for t in byte_ids]  # type: ignore[arg-type]
        return MODE_RAW, list(raw)

    def compress_many(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> list[bytes]:
        raise NotImplementedError

    def decompress_many(self, payloads: Sequence[bytes], progress: Callable[[int], None] | None = None,
                        errors: bool = False) -> list[Any]:
        raise NotImplementedError

    def encode_file(self, text: str, final_newline: bool = False) -> bytes:
        """A complete caption file: compact header, payload, 16-bit check (payload + 3 bytes; 5 for codec 1).

        ``final_newline`` records a trailing newline outside the coded text (as text files end).
        """
        return self.encode_files([([text], False, final_newline)])[0]

    def decode_file(self, data: bytes) -> str:
        """Inverse of :meth:`encode_file` (the final newline flag, if set, is appended); refuses another
        model before decoding and verifies the check after."""
        header, record = compact.unpack(data, fingerprint=self.fingerprint, codec=self.codec_id,
                                        adapted=self.adapted)
        return self._decode_records([record])[0] + ("\n" if header.final_newline else "")

    def encode_lines_file(self, lines: Sequence[str], final_newline: bool = False,
                          progress: Callable[[int], None] | None = None) -> bytes:
        """One file for many captions (one record per line, see :func:`compact.pack_lines`)."""
        return self.encode_files([(list(lines), True, final_newline)], progress)[0]

    def decode_lines_file(self, data: bytes, progress: Callable[[int], None] | None = None) -> tuple[list[str], bool]:
        """Inverse of :meth:`encode_lines_file`: the lines and whether the original ended with a newline."""
        header, records = compact.unpack_lines(data, fingerprint=self.fingerprint, codec=self.codec_id)
        return self._decode_records(records, progress), header.final_newline

    def encode_files(self, files: Sequence[tuple[Sequence[str], bool, bool]],
                     progress: Callable[[int], None] | None = None) -> list[bytes]:
        """Several caption files coded together: each ``(texts, lines, final_newline)`` (``lines`` False
        means exactly one text) becomes one file; all texts go through one :meth:`compress_many` call."""
        flat = [t for texts, _, _ in files for t in texts]
        payloads = iter(self.compress_many(flat, progress))
        out = []
        for texts, lines, nl in files:
            mine = [next(payloads) for _ in texts]
            check = [t.encode("utf-8") for t in texts]
            if lines:
                out.append(compact.pack_lines(mine, codec=self.codec_id, fingerprint=self.fingerprint,
                                              check_data=check, final_newline=nl))
            else:
                if len(texts) != 1:
                    raise InvalidInputError("a single-caption file holds exactly one text")
                out.append(compact.pack(mine[0], codec=self.codec_id, fingerprint=self.fingerprint,
                                        check_data=check[0], final_newline=nl, adapted=self.adapted))
        return out

    def decode_files(self, blobs: Sequence[bytes], progress: Callable[[int], None] | None = None,
                     ) -> list[str | SemzipError]:
        """Several caption files (single or lines) decoded together: each file's full text (lines joined
        with newlines, final newline restored), or the error that file raised."""
        parsed: list[Any] = []
        records: list[compact.CompactRecord] = []
        for data in blobs:
            try:
                header = compact.read_header(data)
                if header.lines:
                    header, recs = compact.unpack_lines(data, fingerprint=self.fingerprint, codec=self.codec_id)
                else:
                    header, rec = compact.unpack(data, fingerprint=self.fingerprint, codec=self.codec_id,
                                                 adapted=self.adapted)
                    recs = [rec]
                parsed.append((header, len(records), len(recs)))
                records += recs
            except SemzipError as exc:
                parsed.append(exc)
        texts = self._decode_records(records, progress, errors=True)
        out: list[str | SemzipError] = []
        for item in parsed:
            if isinstance(item, SemzipError):
                out.append(item)
                continue
            header, start, n = item
            mine = texts[start:start + n]
            bad = next((t for t in mine if isinstance(t, SemzipError)), None)
            if bad is not None:
                out.append(bad)
            else:
                out.append("\n".join(mine) + ("\n" if header.final_newline else ""))
        return out

    def _decode_records(self, records: Sequence[compact.CompactRecord],
                        progress: Callable[[int], None] | None = None, errors: bool = False) -> list[Any]:
        texts = self.decompress_many([r.payload for r in records], progress, errors=True)
        out: list[Any] = []
        for rec, text in zip(records, texts, strict=True):
            if isinstance(text, EntropyDecodeError):
                text = EntropyDecodeError(f"{text} (or the file is damaged)")
            elif isinstance(text, str):
                try:
                    rec.verify(text.encode("utf-8"))
                except CorruptedSectionError as exc:
                    text = EntropyDecodeError(str(exc))
            if isinstance(text, SemzipError) and not errors:
                raise text
            out.append(text)
        return out


class TextCoder(_CaptionFiles):
    """Codec 1: the float language model (same-machine decoding only; kept to read codec-1 files).

    ``compress(text) -> bytes``, ``decompress``; one caption at a time.
    """

    codec_id = CODEC_ID

    def __init__(self, lm: Any, prompt: str = PROMPT_V1) -> None:
        self.lm = lm
        self.prompt = prompt
        tok = lm.tokenizer
        self._tok = getattr(tok, "backend_tokenizer", None)
        self._hf_tok = tok
        self.prompt_ids = self._encode(prompt)
        if not self.prompt_ids:
            bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            self.prompt_ids = [int(bos)]
        nl = self._encode("\n")
        if len(nl) != 1:
            raise InvalidInputError(f"the tokenizer of {lm.name} has no single newline token")
        self.newline_id = nl[0]
        eos = tok.eos_token_id
        self.eos_id = int(eos) if eos is not None else self.newline_id
        _set_coder_tables(self, lm, _byte_tokens(tok), prompt)

    # ------------------------------------------------------------------------------ tokenization

    def _encode(self, text: str) -> list[int]:
        if self._tok is not None:
            return list(self._tok.encode(text, add_special_tokens=False).ids)
        return list(self._hf_tok.encode(text, add_special_tokens=False))

    def _decode(self, ids: Sequence[int]) -> str:
        if self._tok is not None:
            return self._tok.decode(list(ids), skip_special_tokens=False)
        return self._hf_tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _spells(self, ids: list[int], text: str, raw: bytes) -> bool:
        return self._decode(ids) == text

    # ------------------------------------------------------------------------------ coding

    def compress(self, text: str) -> bytes:
        """The coded payload of ``text`` (no header, no checksum): a few bytes for a caption."""
        mode, ids = self.symbols(text)
        if len(ids) > self.max_tokens:
            raise InvalidInputError(
                f"text is {len(ids)} tokens long; the caption coder takes at most {self.max_tokens} "
                f"(the context of {self.lm.name}): use a general-purpose compressor for long texts"
            )
        enc = Encoder()
        enc.encode_categorical([mode], _MODE_MODEL)
        if mode == MODE_RAW:
            enc.encode_uniform([*ids, _RAW_END], _RAW_END + 1)
            return _le_to_be(enc.to_bytes()).rstrip(b"\x00")
        term = self.newline_id if mode == MODE_LINE else self.eos_id
        seq = [*ids, term]
        models: list[CategoricalModel] = []
        cost = 0
        with self.lm.coding_mode():
            session = self.lm.start(self.prompt_ids)
            for i, t in enumerate(seq):
                f = logits_to_freqs(session.logits)
                models.append(CategoricalModel(f, PRECISION))
                enc.encode_categorical([t], models[-1])
                cost += _cost(f[t])
                if i + 1 < len(seq):
                    session.step(t)
        payload = _shortest(_le_to_be(enc.to_bytes()), mode, seq, models)
        # Keep the decoder's bound valid: zero bytes read like the decoder's own padding (never needed
        # in practice, kept for exactness).
        while cost > _COST_SCALE * (8 * len(payload) + _SLACK_BITS):
            payload += b"\x00"
        return payload

    def decompress(self, payload: bytes) -> str:
        """The exact text coded in ``payload``; EntropyDecodeError if it cannot be decoded consistently."""
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"payload must be bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        budget = _COST_SCALE * (8 * len(payload) + _SLACK_BITS)
        dec = Decoder(_be_to_le(payload))
        mode = int(dec.decode_categorical(_MODE_MODEL, 1)[0])
        if mode == MODE_RAW:
            return self._decode_raw(dec, len(payload))
        term = self.newline_id if mode == MODE_LINE else self.eos_id
        ids: list[int] = []
        cost = 0
        with self.lm.coding_mode():
            session = self.lm.start(self.prompt_ids)
            while True:
                f = logits_to_freqs(session.logits)
                t = int(dec.decode_categorical(CategoricalModel(f, PRECISION), 1)[0])
                cost += _cost(f[t])
                if cost > budget:
                    raise EntropyDecodeError(
                        "caption payload decodes to more information than it holds: it is corrupt or "
                        "was encoded with a different model"
                    )
                if t == term:
                    break
                if len(ids) >= self.max_tokens or (mode == MODE_BYTES and t not in self._byte_of):
                    raise EntropyDecodeError("caption payload does not decode to a valid text: it is corrupt")
                ids.append(t)
                session.step(t)
        # No Decoder.finish(): shortened payloads end inside the final interval, not where constriction's
        # own seal would put them, so "data left over" cannot be told apart; the file check covers it.
        if mode == MODE_BYTES:
            try:
                return bytes(self._byte_of[t] for t in ids).decode("utf-8")
            except UnicodeDecodeError:
                raise EntropyDecodeError("caption payload decodes to invalid UTF-8: it is corrupt") from None
        return self._decode(ids)

    @staticmethod
    def _decode_raw(dec: Decoder, size: int) -> str:
        raw = bytearray()
        while (b := int(dec.decode_uniform(_RAW_END + 1, 1)[0])) != _RAW_END:
            if len(raw) > size:
                raise EntropyDecodeError("raw caption payload runs past its end: it is corrupt")
            raw.append(b)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EntropyDecodeError("caption payload decodes to invalid UTF-8: it is corrupt") from None

    def compress_many(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> list[bytes]:
        """:meth:`compress` for each text (the model stays loaded; ``progress(1)`` after each)."""
        out = []
        for text in texts:
            out.append(self.compress(text))
            if progress is not None:
                progress(1)
        return out

    def decompress_many(self, payloads: Sequence[bytes], progress: Callable[[int], None] | None = None,
                        errors: bool = False) -> list[Any]:
        """:meth:`decompress` for each payload (with ``errors``, a payload's SemzipError is returned in its
        place instead of raised)."""
        out: list[Any] = []
        for payload in payloads:
            try:
                out.append(self.decompress(payload))
            except SemzipError as exc:
                if not errors:
                    raise
                out.append(exc)
            if progress is not None:
                progress(1)
        return out


# ---------------------------------------------------------------------------------------------- codec 2

INT_CODEC_ID = 2
BATCH_SIZE = 64  # captions per forward pass
BATCH_ROWS = 256  # token rows per encoding pass: arrays stay cache-sized (speed only; bounds memory too)
PROMPT_V1_IDS_SMOLLM2 = (
    20355, 2443, 36909, 28, 582, 567, 1761, 42, 198, 49, 2767, 12894, 335, 253, 10091, 6289, 1867, 288, 253, 2382,
    4405, 30, 198, 10345, 701, 6139, 1187, 253, 10229, 2240, 7280, 418, 3163, 30, 198, 49, 6496, 282, 7341, 284,
    5136, 335, 253, 2537, 3252, 30, 198, 49, 555, 13948, 253, 12094, 1896, 253, 4505, 282, 41239, 5989, 30, 198,
    49, 1165, 9902, 351, 253, 23588, 28, 253, 14864, 284, 2537, 36563, 30, 198, 49, 1528, 282, 29198, 37938,
    6479, 281, 253, 42661, 1955, 30, 198, 81, 4166, 6961, 354, 21946, 281, 260, 5249, 198, 2122, 314, 253,
    2382, 1549, 8976, 418, 260, 2103, 282, 260, 3398, 30, 198,
)
"""PROMPT_V1 as SmolLM2 token ids, fixed here so that decoding never depends on a tokenizer library."""


@dataclass
class _Decoding:
    """One payload being decoded by :meth:`IntTextCoder.decompress_many`."""

    index: int
    dec: Decoder
    mode: int
    term: int
    budget: int
    ids: list[int] = field(default_factory=list)
    cost: int = 0


class IntTextCoder(_CaptionFiles):
    """Codec 2: the same coder as codec 1 (modes, prompt, terminators, shortest payloads, guards) driven by
    the integer-exact model of :mod:`semzip.models.intlm`, so files decode on any machine; captions are
    coded in batches, which cannot change a bit (tested)."""

    codec_id = INT_CODEC_ID

    def __init__(self, lm: Any, prompt: str | None = None, batch_size: int = BATCH_SIZE) -> None:
        self.lm = lm
        adapter = getattr(lm, "adapter", None)
        if prompt is None:  # an adapted model reads the prompt it was trained with
            prompt = adapter.prompt if adapter is not None else PROMPT_V1
        self.prompt = prompt
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        table = lm.table
        if adapter is not None and prompt == adapter.prompt:
            self.prompt_ids = list(adapter.prompt_ids)  # stored with the adapter: no tokenizer needed
            if any(not 0 <= i < lm.vocab_size for i in self.prompt_ids) or \
                    table.text_bytes(self.prompt_ids) != prompt.encode("utf-8"):
                raise ModelMismatchError(f"adapter {adapter.path}: its prompt token ids do not spell its prompt")
        elif prompt == PROMPT_V1 and lm.name == "smollm2-135m":
            self.prompt_ids = list(PROMPT_V1_IDS_SMOLLM2)
        else:
            self.prompt_ids = lm.encode(prompt) or [lm.bos_id]
        newline = table.byte_ids[10]
        if newline is None:
            raise InvalidInputError(f"the vocabulary of {lm.name} has no single newline token")
        self.newline_id = int(newline)
        self.eos_id = int(lm.eos_id)
        _set_coder_tables(self, lm, table.byte_ids, prompt)
        self._prefix: Any = None

    @property
    def prefix(self) -> Any:
        """The model state after the prompt (computed once, cached with the model)."""
        if self._prefix is None:
            state = getattr(self.lm, "prompt_state", None)  # adapters may read base-model prompt states
            self._prefix = state(self.prompt_ids) if state is not None else self.lm.prefix(self.prompt_ids)
        return self._prefix

    def _encode(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def _spells(self, ids: list[int], text: str, raw: bytes) -> bool:
        return self.lm.table.text_bytes(ids) == raw  # the decoder's own table, not a tokenizer library

    def compress(self, text: str) -> bytes:
        """The coded payload of ``text`` (no header, no checksum)."""
        return self.compress_many([text])[0]

    def decompress(self, payload: bytes) -> str:
        """The exact text coded in ``payload``; EntropyDecodeError if it cannot be decoded consistently."""
        return self.decompress_many([payload])[0]

    def compress_many(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> list[bytes]:
        """Payloads of ``texts``; every text is checked before any model work, then the captions go through
        the model in batches of similar length (``progress(1)`` after each caption)."""
        items = []
        for i, text in enumerate(texts):
            try:
                mode, ids = self.symbols(text)
            except InvalidInputError as exc:
                raise InvalidInputError(f"text {i}: {exc}") from None
            if mode != MODE_RAW and len(ids) > self.max_tokens:
                raise InvalidInputError(
                    f"text {i} is {len(ids)} tokens long; the caption coder takes at most {self.max_tokens} "
                    f"(the context of {self.lm.name}): use a general-purpose compressor for long texts")
            items.append((mode, ids))
        out: list[bytes] = [b""] * len(items)
        coded = []
        for i, (mode, ids) in enumerate(items):
            if mode == MODE_RAW:
                enc = Encoder()
                enc.encode_categorical([mode], _MODE_MODEL)
                enc.encode_uniform([*ids, _RAW_END], _RAW_END + 1)
                out[i] = _le_to_be(enc.to_bytes()).rstrip(b"\x00")
                if progress is not None:
                    progress(1)
            else:
                term = self.newline_id if mode == MODE_LINE else self.eos_id
                coded.append((i, mode, [*ids, term]))
        coded.sort(key=lambda c: len(c[2]))
        start = 0
        while start < len(coded):
            end, rows = start, 0
            while end < len(coded) and end - start < self.batch_size and (
                    end == start or rows + len(coded[end][2]) <= BATCH_ROWS):
                rows += len(coded[end][2])
                end += 1
            chunk = coded[start:end]
            tables = self.lm.model.score(self.prefix, [seq for _, _, seq in chunk])
            for (i, mode, seq), freqs in zip(chunk, tables, strict=True):
                out[i] = self._payload(mode, seq, freqs)
                if progress is not None:
                    progress(1)
            start = end
        return out

    @staticmethod
    def _payload(mode: int, seq: Sequence[int], freqs: np.ndarray) -> bytes:
        enc = Encoder()
        enc.encode_categorical([mode], _MODE_MODEL)
        models, cost = [], 0
        for t, f in zip(seq, freqs, strict=True):
            models.append(CategoricalModel(f, PRECISION))
            enc.encode_categorical([t], models[-1])
            cost += _cost(f[t])
        payload = _shortest(_le_to_be(enc.to_bytes()), mode, seq, models)
        while cost > _COST_SCALE * (8 * len(payload) + _SLACK_BITS):
            payload += b"\x00"
        return payload

    def decompress_many(self, payloads: Sequence[bytes], progress: Callable[[int], None] | None = None,
                        errors: bool = False) -> list[Any]:
        """Texts of ``payloads``, decoded in batches (each sequence steps the model until its terminator).
        With ``errors`` a payload that cannot be decoded gives its SemzipError in its place."""
        out: list[Any] = [None] * len(payloads)
        pending: list[_Decoding] = []
        for i, payload in enumerate(payloads):
            try:
                if not isinstance(payload, (bytes, bytearray, memoryview)):
                    raise InvalidInputError(f"payload must be bytes, got {type(payload).__name__}")
                payload = bytes(payload)
                dec = Decoder(_be_to_le(payload))
                mode = int(dec.decode_categorical(_MODE_MODEL, 1)[0])
                if mode == MODE_RAW:
                    out[i] = TextCoder._decode_raw(dec, len(payload))
                    if progress is not None:
                        progress(1)
                    continue
                term = self.newline_id if mode == MODE_LINE else self.eos_id
                pending.append(_Decoding(i, dec, mode, term, _COST_SCALE * (8 * len(payload) + _SLACK_BITS)))
            except SemzipError as exc:
                if not errors:
                    raise
                out[i] = exc
                if progress is not None:
                    progress(1)
        for start in range(0, len(pending), self.batch_size):
            for item, result in self._decode_batch(pending[start:start + self.batch_size]):
                if isinstance(result, SemzipError) and not errors:
                    raise result
                out[item.index] = result
                if progress is not None:
                    progress(1)
        return out

    def _decode_batch(self, items: list[_Decoding]) -> Iterator[tuple[_Decoding, Any]]:
        model, prefix = self.lm.model, self.prefix
        live = list(items)
        batch = model.new_batch(prefix, len(live), min(32, self.max_tokens))
        freqs = np.broadcast_to(prefix.freqs, (len(live), prefix.freqs.size))
        while live:
            keep, rows, feed = [], [], []
            for row, item in enumerate(live):
                f = freqs[row]
                try:
                    t = int(item.dec.decode_categorical(CategoricalModel(f, PRECISION), 1)[0])
                    item.cost += _cost(f[t])
                    if item.cost > item.budget:
                        raise EntropyDecodeError(
                            "caption payload decodes to more information than it holds: it is corrupt or "
                            "was encoded with a different model")
                    if t == item.term:
                        yield item, self._text(item)
                        continue
                    if len(item.ids) >= self.max_tokens or (item.mode == MODE_BYTES and t not in self._byte_of) \
                            or self.lm.table.bytes[t] is None:
                        raise EntropyDecodeError("caption payload does not decode to a valid text: it is corrupt")
                except SemzipError as exc:
                    yield item, exc
                    continue
                item.ids.append(t)
                keep.append(item)
                rows.append(row)
                feed.append(t)
            live = keep
            if not live:
                break
            batch.select(rows)
            batch.reserve(1)
            freqs = model.step(batch, np.asarray(feed, dtype=np.int64))

    def _text(self, item: _Decoding) -> Any:
        if item.mode == MODE_BYTES:
            raw = bytes(self._byte_of[t] for t in item.ids)
        else:
            raw = self.lm.table.text_bytes(item.ids)
            if raw is None:
                return EntropyDecodeError("caption payload does not decode to a valid text: it is corrupt")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return EntropyDecodeError("caption payload decodes to invalid UTF-8: it is corrupt")
