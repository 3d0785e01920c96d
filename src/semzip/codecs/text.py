"""Caption coding with a causal language model: LM next-token probabilities drive a range coder.

Algorithm (codec id 1; every constant below is part of it, see docs/text-coding.md):

1. Mode. The text is tokenized with the model's tokenizer (no special tokens added). If
   ``decode(tokens) == text`` exactly and no token is the terminator, the tokens are coded (mode 0 when
   the text has no newline, terminated by the newline token; mode 1 otherwise, terminated by the
   tokenizer's EOS token). Otherwise the UTF-8 bytes are coded as the tokenizer's 256 byte-level tokens
   (mode 2, EOS-terminated). Bytes that have no token (SmolLM2's GGUF vocabulary lacks a few control
   characters, which its tokenizer drops) make the text fall back to raw bytes, coded uniformly with an
   end symbol (mode 3, 8 bits per byte, no model). So every string round-trips exactly. The mode is the
   first coded symbol, under a fixed table where mode 0 costs 0.001 bit.
2. Context. The model reads a fixed few-shot prompt (:data:`PROMPT_V1`: an instruction and eight
   hand-written captions, one per line) once; its KV cache is reused for every caption. Then one forward
   pass per token, in the same order on both sides.
3. Integer frequencies (the documented deterministic step, :func:`logits_to_freqs`): float32 logits ->
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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from semzip.entropy import CategoricalModel, Decoder, Encoder
from semzip.errors import CorruptedSectionError, EntropyDecodeError, InvalidInputError
from semzip.format import compact

__all__ = ["CODEC_ID", "PRECISION", "PROMPT_V1", "TextCoder", "logits_to_freqs"]

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
    table = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {b: chr(b) for b in table}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    vocab = tokenizer.get_vocab()
    best: list[int | None] = [None] * 256
    for spell in (lambda b: chars[b], lambda b: f"<0x{b:02X}>"):
        ids = [vocab.get(spell(b)) for b in range(256)]
        if sum(i is not None for i in ids) > sum(i is not None for i in best):
            best = [None if i is None else int(i) for i in ids]
    return best


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


class TextCoder:
    """Lossless LM-based coder for short texts (captions): ``compress(text) -> bytes``, ``decompress``."""

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
        self.byte_ids = _byte_tokens(tok)
        self._byte_of = {t: b for b, t in enumerate(self.byte_ids) if t is not None and t != self.eos_id}
        self.max_tokens = max(1, lm.max_positions - len(self.prompt_ids) - 1)
        # The coder's identity: the model, and the prompt when it is not the codec's own.
        if prompt == PROMPT_V1:
            self.fingerprint = lm.fingerprint
        else:
            h = hashlib.sha256(f"{lm.fingerprint}\x00{prompt}".encode())
            self.fingerprint = h.hexdigest()[: len(lm.fingerprint)]

    # ------------------------------------------------------------------------------ tokenization

    def _encode(self, text: str) -> list[int]:
        if self._tok is not None:
            return list(self._tok.encode(text, add_special_tokens=False).ids)
        return list(self._hf_tok.encode(text, add_special_tokens=False))

    def _decode(self, ids: Sequence[int]) -> str:
        if self._tok is not None:
            return self._tok.decode(list(ids), skip_special_tokens=False)
        return self._hf_tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def symbols(self, text: str) -> tuple[int, list[int]]:
        """The mode and the token ids that :meth:`compress` codes for ``text`` (terminator excluded)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"text is not valid Unicode (lone surrogate?): {exc}") from None
        ids = self._encode(text)
        mode = MODE_LINE if "\n" not in text else MODE_TEXT
        term = self.newline_id if mode == MODE_LINE else self.eos_id
        if term not in ids and self._decode(ids) == text:
            return mode, ids
        byte_ids = [self.byte_ids[b] for b in raw]
        if all(t is not None and t in self._byte_of for t in byte_ids):
            return MODE_BYTES, [int(t) for t in byte_ids]  # type: ignore[arg-type]
        return MODE_RAW, list(raw)

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

    def decompress_many(
        self, payloads: Sequence[bytes], progress: Callable[[int], None] | None = None
    ) -> list[str]:
        """:meth:`decompress` for each payload."""
        out = []
        for payload in payloads:
            out.append(self.decompress(payload))
            if progress is not None:
                progress(1)
        return out

    # ------------------------------------------------------------------------------ whole files

    def encode_file(self, text: str, final_newline: bool = False) -> bytes:
        """A complete caption file: compact header, payload, 16-bit check (payload + 5 bytes).

        ``final_newline`` records a trailing newline outside the coded text (as text files end).
        """
        payload = self.compress(text)
        return compact.pack(payload, codec=CODEC_ID, fingerprint=self.fingerprint,
                            check_data=text.encode("utf-8"), final_newline=final_newline)

    def decode_file(self, data: bytes) -> str:
        """Inverse of :meth:`encode_file` (the final newline flag, if set, is appended); refuses another
        model before decoding and verifies the check after."""
        header, record = compact.unpack(data, fingerprint=self.fingerprint, codec=CODEC_ID)
        return self._decode_record(record) + ("\n" if header.final_newline else "")

    def encode_lines_file(self, lines: Sequence[str], final_newline: bool = False,
                          progress: Callable[[int], None] | None = None) -> bytes:
        """One file for many captions (one record per line, see :func:`compact.pack_lines`)."""
        payloads = self.compress_many(lines, progress)
        return compact.pack_lines(payloads, codec=CODEC_ID, fingerprint=self.fingerprint,
                                  check_data=[t.encode("utf-8") for t in lines], final_newline=final_newline)

    def decode_lines_file(self, data: bytes, progress: Callable[[int], None] | None = None) -> tuple[list[str], bool]:
        """Inverse of :meth:`encode_lines_file`: the lines and whether the original ended with a newline."""
        header, records = compact.unpack_lines(data, fingerprint=self.fingerprint, codec=CODEC_ID)
        out = []
        for rec in records:
            out.append(self._decode_record(rec))
            if progress is not None:
                progress(1)
        return out, header.final_newline

    def _decode_record(self, record: compact.CompactRecord) -> str:
        try:
            text = self.decompress(record.payload)
        except EntropyDecodeError as exc:
            raise EntropyDecodeError(f"{exc} (or the file is damaged)") from None
        try:
            record.verify(text.encode("utf-8"))
        except CorruptedSectionError as exc:
            raise EntropyDecodeError(str(exc)) from None
        return text
