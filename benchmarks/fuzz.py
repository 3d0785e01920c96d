"""Fuzz every semzip decoder entry point: any input must decode or raise a ``SemzipError`` subclass.

Run: ``python benchmarks/fuzz.py --seconds 300`` (prints the table, writes benchmarks/results/fuzz.json,
which ``benchmarks/reliability.py`` turns into benchmarks/results/reliability.md).
``--atheris --target NAME -max_total_time=60`` runs one target under atheris' coverage-guided engine instead
(``pip install atheris``; libFuzzer options pass through; the corpus grows in fuzz-corpus/<target>, a finding
is saved as crash-*). tests/test_fuzz.py imports this file and runs a CI-sized, seeded pass.

The built-in mutator starts from valid seeds (real archives, caption files, model tables, item records)
and applies cheap mutations: bit flips, byte overwrites with interesting values, truncations, insertions,
deletions, chunk duplications and wholly random bytes. For container-based targets half of the inputs are
*structure-aware*: one section's payload (or the header JSON) is mutated and the container is re-packed
with correct lengths and CRC32s, so the codec's own parsing is reached instead of stopping at the CRC.

Contract checked per input: the call returns, or raises a ``semzip.errors.SemzipError``; anything else
(an ``IndexError``, ``MemoryError``, a pyo3 panic, ...) is a bug. An input that takes more than
``SLOW_S`` seconds is reported as a hang.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semzip.errors import SemzipError

RESULTS = Path(__file__).parent / "results" / "fuzz.json"
_CAUSE = re.compile(r"cannot decode image \((\w+):")
SLOW_S = 2.0
FINGERPRINT = "0123456789abcdef"
INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x40, 0x20]
JSON_VALUES = [0, 1, -1, 2, 3, 7, 16, 255, 2**31, 2**32, 2**63, -(2**63), 10**12, 10**30, 1e308, -1e308,
               0.0, 1e-300, 0.5, "x", "", None, [], {}, True, False, float("nan"), float("inf")]


# ------------------------------------------------------------------------------------------- mutations


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four cheap byte-level mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 4))):
        op = rng.randrange(9)
        n = len(buf)
        if op == 0 and n:  # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # interesting byte
            buf[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2 and n:  # random byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 3 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 4:  # insert random bytes
            i = rng.randrange(n + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 5 and n:  # delete a range
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, 16)]
        elif op == 6 and n:  # duplicate a chunk
            i = rng.randrange(n)
            chunk = buf[i : i + rng.randint(1, 32)]
            j = rng.randrange(n + 1)
            buf[j:j] = chunk
        elif op == 7:  # long varint / 0xff run
            i = rng.randrange(n + 1)
            buf[i:i] = bytes([0xFF] * rng.randint(1, 12)) + bytes([rng.randrange(128)])
        elif op == 8 and n:  # swap two bytes
            i, j = rng.randrange(n), rng.randrange(n)
            buf[i], buf[j] = buf[j], buf[i]
    return bytes(buf)


def random_bytes(rng: random.Random, max_len: int = 64) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, max_len)))


def _mutate_json(rng: random.Random, meta: dict) -> None:
    """Set one header field (a codec parameter, n_items, ...) to a hostile value."""
    keys = [("params", k) for k in meta.get("params", {})] + [(None, "n_items"), (None, "codec")]
    where, key = rng.choice(keys)
    target = meta[where] if where else meta
    if rng.random() < 0.2:
        target.pop(key, None)
    elif isinstance(target.get(key), (int, float)) and not isinstance(target.get(key), bool) and rng.random() < 0.5:
        target[key] = target[key] * rng.choice((0, -1, 2, 10, 1000, 2**20)) + rng.choice((0, 1, -1))
    else:
        target[key] = rng.choice(JSON_VALUES)


def resection(rng: random.Random, data: bytes) -> bytes:
    """Mutate one section, or one item block, of a valid container and re-pack it with correct lengths and
    CRCs (the index's per-block CRCs included), so the mutation reaches the codec's own parsing."""
    from semzip.format import Container, SectionType
    from semzip.format.container import MAGIC, _pack_index, _section_record

    c = Container.from_bytes(data)
    records = [(SectionType.HEADER, "header", _header_payload(data))]
    records += [(s.type, s.name, c.read(s.name)) for s in c.sections]
    blocks = [[b.n_items, payload] for b, payload in c.iter_blocks()]
    if blocks and rng.random() < 0.4:  # one block's payload (or its item count), index and header kept consistent
        j = rng.randrange(len(blocks))
        if rng.random() < 0.85:
            blocks[j][1] = mutate(rng, blocks[j][1])
        else:
            blocks[j][0] = rng.choice((0, 1, 2, blocks[j][0] + 1, blocks[j][0] * 2, 2**14, 2**31))
            meta = json.loads(records[0][2])
            meta["n_items"] = sum(n for n, _ in blocks)
            records[0] = (SectionType.HEADER, "header", json.dumps(meta).encode())
        fixed = {"index": _pack_index([tuple(b) for b in blocks]), "items": b"".join(p for _, p in blocks)}
        records = [(t, nm, fixed.get(nm, p)) for t, nm, p in records]
    else:
        k = rng.randrange(len(records))
        stype, name, payload = records[k]
        if stype == SectionType.HEADER and rng.random() < 0.8:
            meta = json.loads(payload)
            _mutate_json(rng, meta)
            payload = json.dumps(meta).encode()
        else:
            payload = mutate(rng, payload)
        records[k] = (stype, name, payload)
    preamble = data[: len(MAGIC) + 2]
    out = [preamble, _section_record(records[0][0], "header", records[0][2], crc_prefix=preamble)]
    out += [_section_record(t, nm, p) for t, nm, p in records[1:]]
    return b"".join(out)


def _header_payload(data: bytes) -> bytes:
    from semzip.format.varint import decode_uvarint

    pos = 6  # preamble
    name_len = data[pos + 1]
    length, p = decode_uvarint(data, pos + 2 + name_len)
    return data[p : p + length]


# ------------------------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    run: Callable[[bytes], object]
    structured: Callable[[random.Random, bytes], bytes] | None = None
    weight: int = 1  # relative share of the fuzzing time (and of the inputs in a fixed-count run)
    cost: int = 1  # a fixed-count run gives this target 1/cost of its share (slow decoders: fewer inputs)


def _container_all(data: bytes) -> None:
    import io

    from semzip.format import Container

    # half the inputs go through the file-object reader (what Container.open uses), half through bytes
    c = Container(io.BytesIO(data), len(data), label="fuzz") if len(data) % 2 else Container.from_bytes(data)
    c.blocks  # noqa: B018
    c.names  # noqa: B018
    c.verify()
    c.blobs()
    for _ in c.iter_blocks():
        pass
    if c.header.n_items:
        c.locate(c.header.n_items - 1)
        c.block(len(c.blocks) - 1)


def _codec_decode(data: bytes) -> None:
    from semzip.codecs.base import get_codec
    from semzip.format import Container

    c = Container.from_bytes(data)
    codec = get_codec(c.header.codec).from_header(c.header)
    codec.decompress(c)
    if c.header.n_items:
        codec.decompress(c, items=[c.header.n_items - 1])


_TABLES: dict = {}


def _entropy_decode(data: bytes) -> None:
    from semzip.entropy import CategoricalModel, Decoder, QuantizedGaussianTable, QuantizedLaplaceTable

    if not _TABLES:
        _TABLES["cat"] = CategoricalModel.from_counts(np.arange(1, 40) ** 2)
        _TABLES["gauss"] = QuantizedGaussianTable(num_scales=16)
        _TABLES["laplace"] = QuantizedLaplaceTable(num_scales=16)
    sel = data[0] if data else 0
    dec = Decoder(data[1:])
    dec.decode_categorical(_TABLES["cat"], 50)
    if sel & 1:
        dec.decode_uniform(1000, 20)
    if sel & 2:
        dec.decode_uniform(3 * 2**20 + 7, 10)
    idx = np.arange(40) % 16
    dec.decode_parametric(idx, _TABLES["gauss"] if sel & 4 else _TABLES["laplace"])
    dec.finish()


def _categorical_from_bytes(data: bytes) -> None:
    from semzip.entropy import CategoricalModel

    CategoricalModel.from_bytes(data)


def _compact_read(data: bytes) -> None:
    from semzip.format import compact

    compact.is_compact(data)
    h = compact.read_header(data)
    if h.lines:
        _, recs = compact.unpack_lines(data, fingerprint=FINGERPRINT, codec=1)
    else:
        _, rec = compact.unpack(data, fingerprint=FINGERPRINT, codec=1)
        recs = [rec]
    for r in recs:
        try:
            r.verify(b"a caption")
        except SemzipError:
            pass


def _unpack_item(data: bytes) -> None:
    from semzip.codecs.image_text import unpack_item

    unpack_item(data)


def _lic_shape(data: bytes) -> None:
    from semzip.models.lic import LICShape

    LICShape.from_bytes(data)


_LIC: dict = {}
LIC_MAX_PIXELS = 48 * 48  # fuzzed shapes may declare any size: keep each decode small and fast


class _StubText:
    """Stands in for the caption coder (an LM decode costs seconds): the caption bytes pass through."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.lm = SimpleNamespace(name="stub-lm", fingerprint=FINGERPRINT)
        self.prompt = "stub prompt"
        self.codec_id = 2

    def decompress(self, payload: bytes) -> str:
        return payload.decode("utf-8", "replace")

    def compress_many(self, texts, progress=None) -> list[bytes]:
        return [t.encode("utf-8") for t in texts]

    def decompress_many(self, payloads, progress=None, errors: bool = False) -> list[str]:
        return [self.decompress(p) for p in payloads]


def _image_text_codec():
    if not _LIC:
        from semzip.codecs.image_text import ImageTextCodec
        from semzip.models.lic import load_lic

        lic = load_lic("tiny")
        lic.max_pixels = LIC_MAX_PIXELS
        _LIC["codec"] = ImageTextCodec(lic, _StubText(), scale=1.0)
    return _LIC["codec"]


def _image_text_decode(data: bytes) -> None:
    from semzip.codecs.image_text import stream_split
    from semzip.format import Container

    c = Container.from_bytes(data)
    if c.header.n_items:
        stream_split(c)
    _image_text_codec().decompress(c)


_IMAGE_DIR: dict = {}


def _load_image(data: bytes) -> None:
    import tempfile

    from semzip.data.images import load_image

    if "dir" not in _IMAGE_DIR:
        _IMAGE_DIR["dir"] = tempfile.TemporaryDirectory(prefix="semzip-fuzz-")
    path = Path(_IMAGE_DIR["dir"].name) / "x.img"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about every malformed TIFF tag
        load_image(path, max_pixels=1 << 16)


def _embeddings(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _archive(codec: str, **params) -> bytes:
    import tempfile

    from semzip.api import compress_embeddings

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "a.smz"
        compress_embeddings(_embeddings(40, 12, 0), out, codec=codec, **params)
        return out.read_bytes()


def build_targets() -> list[Target]:
    """Every decoder entry point with its valid seeds."""
    from semzip.codecs.image_text import pack_item
    from semzip.entropy import CategoricalModel, Encoder, QuantizedGaussianTable, QuantizedLaplaceTable
    from semzip.format import Header, compact, pack
    from semzip.models.lic import LICShape

    sq = _archive("sq", block_size=8)
    sq_names = _archive("sq", block_size=16)
    try:
        coll = _archive("collection", n_atoms=8, sparsity=2, max_epochs=2, block_size=8)
        coll_seeds = [coll]
    except SemzipError:  # torch missing: the collection codec cannot encode (decoding needs no torch)
        coll_seeds = []
    plain = pack(Header("sq", {"dim": 3}), {"blob": b"hello"}, [(2, b"ab"), (1, b"c")], names=["a", "b", "c"])
    empty = pack(Header("sq"))

    enc = Encoder()
    cat = CategoricalModel.from_counts(np.arange(1, 40) ** 2)
    rng = np.random.default_rng(1)
    enc.encode_categorical(rng.integers(0, 39, 50), cat)
    enc.encode_uniform(rng.integers(0, 1000, 20), 1000)
    enc.encode_uniform(rng.integers(0, 3 * 2**20 + 7, 10), 3 * 2**20 + 7)
    enc.encode_parametric(rng.integers(-200, 200, 40), np.arange(40) % 16, QuantizedGaussianTable(num_scales=16))
    stream_a = bytes([7]) + enc.to_bytes()
    enc = Encoder()
    enc.encode_categorical(rng.integers(0, 39, 50), cat)
    enc.encode_parametric(rng.integers(-5, 5, 40), np.arange(40) % 16, QuantizedLaplaceTable(num_scales=16))
    stream_b = bytes([0]) + enc.to_bytes()

    single = compact.pack(b"\x12\x34\x56\x78", codec=1, fingerprint=FINGERPRINT, check_data=b"a caption")
    lines = compact.pack_lines([b"\x01\x02", b"", b"\x03" * 9], codec=1, fingerprint=FINGERPRINT,
                               check_data=[b"a caption", b"", b"x"], final_newline=True)

    shape = LICShape(512, 768, 512, 768, model=FINGERPRINT).to_bytes()
    image_text_seeds, image_seeds = [], _image_seeds()
    try:
        image_text_seeds = _image_text_seeds()
    except SemzipError:  # torch missing: no LIC to fuzz
        pass
    return [
        Target("format.Container (+sections/blocks/names/verify)", [sq, plain, empty], _container_all, resection, 3),
        Target("entropy.CategoricalModel.from_bytes", [cat.to_bytes(), CategoricalModel.uniform(3).to_bytes(),
                                                       CategoricalModel.from_counts([1, 0, 0, 5000]).to_bytes()],
               _categorical_from_bytes, None, 2),
        Target("entropy.Decoder (categorical/uniform/parametric)", [stream_a, stream_b], _entropy_decode, None, 2),
        Target("format.compact (caption files)", [single, lines], _compact_read, None, 2),
        Target("codecs.sq decompress", [sq, sq_names], _codec_decode, resection, 2),
        Target("codecs.collection decompress", coll_seeds, _codec_decode, resection, 2),
        Target("codecs.image_text.unpack_item", [pack_item(shape, [b"abc", b"defgh"], b"cap"), pack_item(b"", [], b"")],
               _unpack_item, None, 1),
        Target("models.lic.LICShape.from_bytes", [shape, LICShape(1, 1, 16, 16).to_bytes()], _lic_shape, None, 1),
        Target("codecs.image_text decompress + stream_split (tiny LIC)", image_text_seeds, _image_text_decode,
               resection, 2, cost=10),
        Target("data.images.load_image (PNG/JPEG/GIF/BMP/TIFF/WebP)", image_seeds, _load_image, None, 2, cost=10),
    ]


def _image_text_seeds() -> list[bytes]:
    """Image-text archives of two and one small images (tiny LIC streams, stub captions)."""
    import dataclasses

    from semzip.codecs.image_text import pack_item
    from semzip.format import pack

    codec = _image_text_codec()
    rng = np.random.default_rng(2)
    imgs = [(rng.random((24, 40, 3)) * 255).astype(np.uint8), np.full((16, 16, 3), 200, np.uint8)]
    caps = ["a red car", ""]
    blocks = []
    for img, cap in zip(imgs, caps):
        streams, shp = codec.lic.compress(img)
        field = cap.encode("utf-8") + codec._check(cap)  # the stub's payload is the text; then its CRC-16
        blocks.append((1, pack_item(dataclasses.replace(shp, model=None).to_bytes(), streams, field)))
    header = codec.compress([], []).header  # the real header fields (models, prompt tag, refiner)
    two = pack(header, {}, blocks, ["a.png", "b.png"])
    header = codec.compress([], []).header
    one = pack(header, {}, blocks[1:])
    return [two, one]


def _image_seeds() -> list[bytes]:
    """Small images in every format and mode the loader converts (RGB, L, P+transparency, RGBA, 16-bit, CMYK)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(3)
    rgb = Image.fromarray((rng.random((12, 10, 3)) * 255).astype(np.uint8))
    out = []
    for img, fmt, kw in [
        (rgb, "PNG", {}),
        (rgb, "JPEG", {"quality": 80}),
        (rgb.convert("CMYK"), "JPEG", {}),
        (rgb.convert("P"), "GIF", {"transparency": 0}),
        (rgb.convert("RGBA"), "PNG", {}),
        (Image.fromarray((rng.random((8, 9)) * 65535).astype(np.uint16)), "PNG", {}),
        (rgb.convert("L"), "BMP", {}),
        (rgb, "TIFF", {}),
        (rgb, "WEBP", {"quality": 50}),
    ]:
        buf = io.BytesIO()
        try:
            img.save(buf, fmt, **kw)
        except (OSError, KeyError):  # a Pillow built without this format
            continue
        out.append(buf.getvalue())
    return out


# ------------------------------------------------------------------------------------------- driver


@dataclass
class Stats:
    name: str
    tried: int = 0
    ok: int = 0
    rejected: int = 0
    other: int = 0
    slow: int = 0
    seconds: float = 0.0
    failures: list[tuple[bytes, str]] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # rejections by SemzipError subclass
    causes: Counter = field(default_factory=Counter)  # load_image: the Pillow error inside a BadImageError


def run_one(target: Target, data: bytes, stats: Stats) -> None:
    t0 = time.perf_counter()
    try:
        target.run(data)
        stats.ok += 1
    except SemzipError as exc:
        stats.rejected += 1
        stats.errors[type(exc).__name__] += 1
        cause = _CAUSE.search(str(exc))
        if cause:
            stats.causes[cause.group(1)] += 1
    except Exception as exc:  # noqa: BLE001 - the contract says: never another exception type
        stats.other += 1
        if len(stats.failures) < 20:
            stats.failures.append((data, "".join(traceback.format_exception_only(type(exc), exc)).strip()))
    dt = time.perf_counter() - t0
    if dt > SLOW_S:
        stats.slow += 1
        if len(stats.failures) < 20:
            stats.failures.append((data, f"slow: {dt:.1f} s"))
    stats.tried += 1


def next_input(rng: random.Random, target: Target) -> bytes:
    r = rng.random()
    seed = rng.choice(target.seeds)
    if r < 0.05:
        return random_bytes(rng)
    if target.structured is not None and r < 0.55:
        return target.structured(rng, seed)
    return mutate(rng, seed)


def fuzz(targets: list[Target], *, n_inputs: int | None = None, seconds: float | None = None,
         seed: int = 0) -> list[Stats]:
    """Run every target for its share of ``n_inputs`` inputs, or for ``seconds`` split by weight."""
    total_w = sum(t.weight for t in targets if t.seeds)
    out = []
    for i, t in enumerate(targets):
        stats = Stats(t.name)
        out.append(stats)
        if not t.seeds:
            continue
        rng = random.Random(f"{seed}:{i}")
        t0 = time.perf_counter()
        if n_inputs is not None:
            for _ in range(n_inputs * t.weight // total_w // t.cost):
                run_one(t, next_input(rng, t), stats)
        else:
            budget = seconds * t.weight / total_w
            while time.perf_counter() - t0 < budget:
                for _ in range(50):
                    run_one(t, next_input(rng, t), stats)
        stats.seconds = time.perf_counter() - t0
    return out


def table(stats: list[Stats]) -> str:
    head = (f"| entry point | inputs tried | decoded OK | rejected (SemzipError) | other exceptions | hangs (> "
            f"{SLOW_S:g} s) | time (s) |")
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for s in stats:
        rows.append(f"| `{s.name}` | {s.tried} | {s.ok} | {s.rejected} | {s.other} | {s.slow} | {s.seconds:.1f} |")
    tot = [sum(getattr(s, f) for s in stats) for f in ("tried", "ok", "rejected", "other", "slow")]
    rows.append(f"| **total** | {tot[0]} | {tot[1]} | {tot[2]} | {tot[3]} | {tot[4]} | "
                f"{sum(s.seconds for s in stats):.1f} |")
    return "\n".join(rows)


def error_table(stats: list[Stats]) -> str:
    """Rejections per target by error class (and, for images, by the Pillow error behind BadImageError)."""
    rows = ["| entry point | rejected by error class |", "|---|---|"]
    for s in stats:
        if not s.tried:
            continue
        cls = ", ".join(f"{k} {v}" for k, v in s.errors.most_common())
        if s.causes:
            cls += " (inside BadImageError: " + ", ".join(f"{k} {v}" for k, v in s.causes.most_common()) + ")"
        rows.append(f"| `{s.name}` | {cls} |")
    return "\n".join(rows)


def _instrument_semzip() -> None:  # pragma: no cover - optional long run
    """Import semzip's decoder modules under atheris' coverage instrumentation (and nothing else: torch's
    tens of thousands of functions would take minutes to instrument and only add noise)."""
    import atheris

    with atheris.instrument_imports(include=["semzip"]):
        import semzip.codecs.collection
        import semzip.codecs.embeddings
        import semzip.codecs.image_text
        import semzip.data.images
        import semzip.entropy
        import semzip.format.compact
        import semzip.format.container
        import semzip.models.lic  # noqa: F401


def _atheris(target: Target, corpus: Path) -> None:  # pragma: no cover - optional long run
    """Coverage-guided run of one target, starting from its seeds (written to ``corpus``, which grows)."""
    import atheris

    def one(data: bytes) -> None:
        with np.errstate(all="ignore"):
            try:
                target.run(data)
            except SemzipError:
                pass

    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(target.seeds):  # the seeds must pass before mutation starts from them
        one(seed)
        (corpus / f"seed-{i}").write_bytes(seed)
    # libFuzzer options pass through, e.g. -max_total_time=60 -rss_limit_mb=4096
    opts = [a for a in sys.argv[1:] if a.startswith("-") and "=" in a and not a.startswith("--")]
    atheris.Setup([sys.argv[0], *opts, str(corpus)], one)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="total fuzzing time, split over the targets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--atheris", action="store_true", help="coverage-guided run of --target under atheris")
    ap.add_argument("--target", default=None, help="substring of one target's name")
    ap.add_argument("--corpus", default=None, help="atheris corpus folder (default fuzz-corpus/<target>)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/fuzz.json")
    args, _ = ap.parse_known_args(argv)
    if args.atheris:
        _instrument_semzip()
    targets = build_targets()
    if args.target:
        targets = [t for t in targets if args.target in t.name]
    if args.atheris:
        name = "".join(c if c.isalnum() else "-" for c in targets[0].name).strip("-")
        _atheris(targets[0], Path(args.corpus or f"fuzz-corpus/{name}"))
        return 0
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        stats = fuzz(targets, seconds=args.seconds, seed=args.seed)
    wall = time.perf_counter() - t0
    print(table(stats))
    print(error_table(stats))
    bad = [(s.name, d, msg) for s in stats for d, msg in s.failures]
    for name, d, msg in bad[:20]:
        print(f"FAIL {name}: {msg}\n  input: {d.hex()}")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({
            "command": f"python benchmarks/fuzz.py --seconds {args.seconds:g} --seed {args.seed}",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "date": datetime.date.today().isoformat(),
            "wall_s": round(wall, 1),
            "targets": [{
                "name": s.name, "tried": s.tried, "ok": s.ok, "rejected": s.rejected, "other": s.other,
                "slow": s.slow, "seconds": round(s.seconds, 2), "errors": dict(s.errors.most_common()),
                "causes": dict(s.causes.most_common()),
                "failures": [{"input": d.hex(), "error": msg} for d, msg in s.failures],
            } for s in stats],
        }, indent=1) + "\n")
        print(f"wrote {RESULTS}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
