"""Reliability report: fuzzing results, hostile inputs, bad images, fault injection, determinism.

Run (after ``python benchmarks/fuzz.py --seconds 300``, which writes benchmarks/results/fuzz.json):

    python benchmarks/reliability.py                     # writes benchmarks/results/reliability.md
    python benchmarks/reliability.py --atheris 60        # first runs atheris for 60 s per target (pip install atheris)
    python benchmarks/reliability.py --crafted-only      # re-measure section 9 (crafted archives) alone

Each hostile input is checked in a fresh process so its peak RSS (``resource.getrusage``) is its own; the
Python-side peak comes from ``tracemalloc`` (numpy allocations included, constriction's Rust heap not).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOLDEN = ROOT / "tests" / "data" / "golden"
sys.path.insert(0, str(ROOT / "tests"))

# crashes the fuzzer and the hostile-input review found, each fixed and kept as a regression test
FOUND = [
    ("fuzzer (structure-aware, items)", ("image-text block declaring 2**31 items: `decode_items` looped 2**31 times "
     "over the same block (hang)"), "refused: CorruptedSectionError", ("test_fuzz.py::test_image_text_block_declaring_"
     "many_items_is_corrupt")),
    ("fuzzer (header JSON)", "`n_items: Infinity` -> OverflowError from int()", "CorruptedSectionError",
     "test_fuzz.py::test_header_with_infinite_item_count_is_corrupt"),
    ("fuzzer (header JSON)", "sq `dim: 1e12` -> constriction aborted the process allocating 32 TB",
     "ResourceLimitError (max_values)", "test_fuzz.py::test_sq_huge_dimension_is_refused_not_allocated"),
    ("fuzzer (header JSON)", ("sq parameters missing / wrong type / inf / nan -> KeyError, ValueError, "
     "OverflowError, inf embeddings"), "CorruptedSectionError", "test_fuzz.py::test_sq_malformed_parameters_are_corrupt"),
    ("fuzzer (header JSON)", ("collection parameters missing / None / inf / 1e308 -> KeyError, TypeError, "
     "OverflowError; `n_atoms: 1e9` -> 200 GB allocation abort"), "CorruptedSectionError / ResourceLimitError",
     "test_fuzz.py::test_collection_malformed_parameters_are_refused"),
    ("fuzzer (entropy)", "Decoder asked for 2**40 symbols (forged counts) -> MemoryError / process abort",
     "ResourceLimitError (MAX_DECODE_COUNT)", "test_fuzz.py::test_decoder_refuses_absurd_counts_without_allocating"),
    ("review", "names section zip bomb: zlib inflated without bound", "ResourceLimitError (max_names_bytes)",
     "test_hostile.py::test_names_zip_bomb_refused_while_inflating"),
    ("review", "archive without names declaring 2**32 items: 4e9 default names listed in memory",
     "names generated on demand", "test_hostile.py::test_default_names_of_billions_of_items_are_not_listed"),
    ("review", "header JSON nested 100,000 deep -> RecursionError", "CorruptedSectionError",
     "test_hostile.py::test_deeply_nested_header_json_refused"),
    ("review", "the same section listed twice (the reader silently used the first)", "CorruptedSectionError",
     "test_hostile.py::test_repeated_section_refused"),
    ("review", "tiny LIC weights metadata `N: 1e9` built a 1e9-channel network; bad JSON -> ValueError",
     "ModelMismatchError", "test_untrusted.py::test_hostile_lic_metadata_refused_before_building_the_model"),
    ("fuzzer (image files)", ("a 504-byte TIFF on which Pillow 13 raises TypeError: load_image let it escape, "
     "aborting a folder run (2 such inputs in the long run)"), "BadImageError (any exception inside Pillow)",
     "test_fuzz.py::test_tiff_that_makes_pillow_raise_type_error_is_a_bad_image"),
]


# ------------------------------------------------------------------------------------------ hostile inputs


def _container(meta_extra: dict, body=()) -> bytes:
    from semzip.format import MAGIC, SectionType
    from semzip.format.container import _section_record

    pre = MAGIC + bytes([1, 0])
    meta = {"codec": "sq", "params": {}, "models": [], "n_items": 0, "writer": "", **meta_extra}
    meta.setdefault("sections", [[int(t), n] for t, n, _ in body])
    out = [pre, _section_record(SectionType.HEADER, "header", json.dumps(meta).encode(), pre)]
    out += [_section_record(t, n, p) for t, n, p in body]
    return b"".join(out)


def _repack(data: bytes, edit_meta=None, blocks=None) -> bytes:
    """Re-pack an archive after editing its header JSON and/or replacing its blocks (valid CRCs)."""
    from semzip.format import Container, SectionType
    from semzip.format.container import _pack_index, _section_record

    c = Container.from_bytes(data)
    pre = data[:6]
    name_len = data[7]
    from semzip.format.varint import decode_uvarint

    n, p = decode_uvarint(data, 8 + name_len)
    meta = json.loads(data[p : p + n])
    parts = {s.name: c.read(s.name) for s in c.sections}
    if blocks is not None:
        parts["index"], parts["items"] = _pack_index(blocks), b"".join(b for _, b in blocks)
        meta["n_items"] = sum(k for k, _ in blocks)
    if edit_meta:
        edit_meta(meta)
    out = [pre, _section_record(SectionType.HEADER, "header", json.dumps(meta).encode(), pre)]
    out += [_section_record(s.type, s.name, parts[s.name]) for s in c.sections]
    return b"".join(out)


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _decode_archive(data: bytes):
    from semzip.codecs.base import get_codec
    from semzip.format import Container

    c = Container.from_bytes(data)
    return get_codec(c.header.codec).from_header(c.header).decompress(c)


def _h_items():
    from semzip.format import Container

    data = _container({"n_items": 2**63})
    return data, lambda: Container.from_bytes(data)


def _h_section_length():
    from semzip.format import MAGIC, Container, SectionType
    from semzip.format.varint import encode_uvarint

    data = MAGIC + bytes([1, 0, SectionType.HEADER, 6]) + b"header" + encode_uvarint(2**62) + b"{}\0\0\0\0"
    return data, lambda: Container.from_bytes(data)


def _h_header_size():
    from semzip.format import Container

    data = _container({"writer": "x" * (20 << 20)})
    return data, lambda: Container.from_bytes(data)


def _h_sections():
    from semzip.format import Container

    data = _container({"sections": [[2, f"b{i}"] for i in range(10_000)]})
    return data, lambda: Container.from_bytes(data)


def _h_nested():
    from semzip.format import MAGIC, Container, SectionType
    from semzip.format.container import _section_record

    nested = "[" * 100_000 + "]" * 100_000
    pre = MAGIC + bytes([1, 0])
    head = ('{"codec":"sq","params":{},"models":[],"n_items":0,"sections":' + nested + "}").encode()
    data = pre + _section_record(SectionType.HEADER, "header", head, pre)
    return data, lambda: Container.from_bytes(data)


def _h_repeated():
    from semzip.format import Container, SectionType

    data = _container({}, [(SectionType.BLOB, "model", b"a"), (SectionType.BLOB, "model", b"b")])
    return data, lambda: Container.from_bytes(data)


def _h_blocks():
    from semzip.format import Container, SectionType
    from semzip.format.varint import encode_uvarint

    index = encode_uvarint(2**40) + encode_uvarint(1) + encode_uvarint(1) + zlib.crc32(b"a").to_bytes(4, "little")
    data = _container({"n_items": 1}, [(SectionType.INDEX, "index", index), (SectionType.ITEMS, "items", b"a")])
    return data, lambda: Container.from_bytes(data).blocks


def _h_sq_block_items():
    data = (GOLDEN / "v1.0-sq.smz").read_bytes()
    data = _repack(data, blocks=[(2**32, b"\x01\x02\x03\x04")])
    return data, lambda: _decode_archive(data)


def _h_sq_dim():
    data = _repack((GOLDEN / "v1.0-sq.smz").read_bytes(), edit_meta=lambda m: m["params"].update(dim=10**12))
    return data, lambda: _decode_archive(data)


def _h_sq_at_call_cap():
    from semzip.entropy.coder import MAX_DECODE_COUNT

    data = (GOLDEN / "v1.0-sq.smz").read_bytes()  # dim 8
    data = _repack(data, blocks=[(MAX_DECODE_COUNT // 8, b"")])  # an empty stream decodes (zero padding)
    return data, lambda: _decode_archive(data)


def _h_collection_atoms():
    data = _repack((GOLDEN / "v1.0-collection.smz").read_bytes(),
                   edit_meta=lambda m: m["params"].update(n_atoms=10**9))
    return data, lambda: _decode_archive(data)


def _h_names_bomb(n_items: int = 2**20):
    from semzip.format import Container, SectionType

    z = zlib.compressobj(9)
    chunk = b"a" * (1 << 20)
    bomb = b"".join(z.compress(chunk) for _ in range(300)) + z.flush()  # 300 MiB of names
    data = _container({"n_items": n_items}, [(SectionType.BLOB, "names", bomb)])
    return data, lambda: Container.from_bytes(data).names


def _h_default_names():
    from semzip.format import Container, SectionType
    from semzip.format.varint import encode_uvarint

    index = encode_uvarint(1) + encode_uvarint(2**32) + encode_uvarint(1) + zlib.crc32(b"a").to_bytes(4, "little")
    data = _container({"n_items": 2**32}, [(SectionType.INDEX, "index", index), (SectionType.ITEMS, "items", b"a")])

    def run():
        names = Container.from_bytes(data).names
        return f"accepted: {len(names)} names, last {names[-1]!r}, generated on demand"

    return data, run


def _h_png():
    from semzip.data.images import load_image

    path = Path(tempfile.mkdtemp()) / "bomb.png"
    path.write_bytes(_png_declaring(200_000, 200_000))
    return path.read_bytes(), lambda: load_image(path)


def _h_caption_count():
    from semzip.format import compact
    from semzip.format.varint import encode_uvarint

    fp = "0123456789abcdef"
    data = bytes([compact.COMPACT_MAGIC, (compact.COMPACT_VERSION << 5) | 0x10 | 1, bytes.fromhex(fp)[0]])
    data += encode_uvarint(2**62) + b"\x01\x00\x00\x00"
    return data, lambda: compact.unpack_lines(data, fingerprint=fp)


def _h_lic_shape():
    from semzip.models.lic import LICShape, load_lic

    lic = load_lic("tiny")
    streams, shape = lic.compress(np.full((16, 16, 3), 100, np.uint8))
    hostile = LICShape(2**40, 2**40, 2**40, 2**40, shape.model)
    return hostile.to_bytes(), lambda: lic.decompress(streams, hostile)


def _h_image_text_items():
    import importlib.util

    spec = importlib.util.spec_from_file_location("semzip_fuzz", ROOT / "benchmarks" / "fuzz.py")
    fz = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fz
    spec.loader.exec_module(fz)
    from semzip.format import Container

    seed = fz._image_text_seeds()[0]
    blocks = [(b.n_items, p) for b, p in Container.from_bytes(seed).iter_blocks()]
    blocks[0] = (2**31, blocks[0][1])
    data = _repack(seed, blocks=blocks)
    return data, lambda: fz._image_text_codec().decompress(Container.from_bytes(data))


def _h_decoder_count():
    from semzip.entropy import CategoricalModel, Decoder

    return b"\x01\x02\x03\x04", lambda: Decoder(b"\x01\x02\x03\x04").decode_categorical(
        CategoricalModel.from_counts([1, 2, 3]), 2**40)


def _h_lic_weights():
    import torch
    from safetensors.torch import save_file

    from semzip.models.lic import TINY_NAME, load_lic

    path = Path(tempfile.mkdtemp()) / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"semzip_model": TINY_NAME, "config": '{"N": 1000000000}'})
    return path.read_bytes(), lambda: load_lic(f"tiny:{path}")


HOSTILE = [  # name, what, limit that triggers, builder
    ("items", "header declares 2**63 items", "`max_items` = 2**32", _h_items),
    ("section_length", "section declares 2**62 bytes in a 30-byte file", "file size (structural)",
     _h_section_length),
    ("header_size", "20 MiB header JSON", "`max_header_bytes` = 16 MiB", _h_header_size),
    ("sections", "header lists 10,000 sections", "`max_sections` = 4096", _h_sections),
    ("nested", "header JSON nested 100,000 deep", "JSON nesting (structural)", _h_nested),
    ("repeated", "the same section listed twice", "unique names (structural)", _h_repeated),
    ("blocks", "index declares 2**40 blocks", "`max_blocks` = 2**24, index length", _h_blocks),
    ("sq_block_items", "sq block of 4 bytes declares 2**32 items (x 8 dims)", "`max_values` = 2**30",
     _h_sq_block_items),
    ("sq_dim", "sq header `dim: 1e12`", "`max_values` = 2**30", _h_sq_dim),
    ("sq_at_call_cap", ("**accepted case**: an empty sq block declaring 8,388,608 items x 8 dims (2**26 values, "
     "exactly the per-call cap)"), "none: within every default limit", _h_sq_at_call_cap),
    ("collection_atoms", "collection header `n_atoms: 1e9`", "`max_values` (dictionary size)", _h_collection_atoms),
    ("names_bomb_1", "names section: 300 KiB of zlib inflating to 300 MiB, header declares 1 item",
     "4096 bytes per name x n_items (structural)", lambda: _h_names_bomb(1)),
    ("names_bomb", "the same names section, header declares 2**20 items", "`max_names_bytes` = 256 MiB",
     _h_names_bomb),
    ("default_names", "no names section, one block declaring 2**32 items", "none needed (names made on demand)",
     _h_default_names),
    ("png_dims", "PNG declaring 200,000 x 200,000 pixels", "`load_image(max_pixels=1e8)`", _h_png),
    ("caption_count", "caption file declares 2**62 records", "record count vs file length (structural)",
     _h_caption_count),
    ("lic_shape", "LIC shape declares 2**40 x 2**40 pixels", "`LearnedImageCodec.max_pixels` = 1e8", _h_lic_shape),
    ("image_text_items", "image-text block declares 2**31 items", "one item per block (structural)",
     _h_image_text_items),
    ("decoder_count", "entropy decode of 2**40 symbols", "`semzip.entropy.coder.MAX_DECODE_COUNT` = 2**26",
     _h_decoder_count),
    ("lic_weights", "tiny LIC weights whose metadata says N = 1e9 channels", "sizes 1..1024 (structural)",
     _h_lic_weights),
]


def run_check(name: str) -> dict:
    """Build one hostile input, then run its decoder under tracemalloc; peak RSS is measured around it."""
    build = next(b for n, _, _, b in HOSTILE if n == name)
    from semzip.errors import SemzipError

    data, call = build()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = call()
        result = {"outcome": "accepted", "message": out if isinstance(out, str) else "decoded"}
    except SemzipError as exc:
        result = {"outcome": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported as a failure
        result = {"outcome": f"BUG {type(exc).__name__}", "message": str(exc)}
    result["seconds"] = time.perf_counter() - t0
    result["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    result["rss_growth"] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    result["input_bytes"] = len(data)
    return result


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def hostile_section() -> tuple[str, dict]:
    """The hostile-input table, and the per-value cost of the accepted 2**26-value case (for the text)."""
    cost = {"sq_bytes_per_value": float("nan"), "sq_ns_per_value": float("nan"), "sq_gib_16": float("nan")}
    rows = [("| hostile input | input size | limit that triggers | outcome | peak RSS growth | tracemalloc peak | time |"
            " message |"), "|---|---:|---|---|---:|---:|---:|---|"]
    for name, what, limit, _ in HOSTILE:
        r = subprocess.run([sys.executable, __file__, "--check", name], capture_output=True, text=True,
                           timeout=300, check=False)
        if r.returncode != 0:
            rows.append(f"| {what} | | {limit} | **process failed** rc {r.returncode} | | | | "
                        f"{r.stderr.strip().splitlines()[-1][:150] if r.stderr.strip() else ''} |")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        msg = res["message"].replace("|", "\\|").replace("\n", " ")
        msg = re.sub(r"/tmp/\S+/", "", msg)
        rows.append(f"| {what} | {res['input_bytes']} B | {limit} | {res['outcome']} | {_mib(res['rss_growth'])} | "
                    f"{_mib(res['tracemalloc_peak'])} | {res['seconds'] * 1000:.0f} ms | {msg[:220]} |")
        print(rows[-1], flush=True)
        if name == "sq_at_call_cap":
            per_value = res["rss_growth"] / 2**26
            cost = {"sq_bytes_per_value": per_value, "sq_ns_per_value": res["seconds"] / 2**26 * 1e9,
                    "sq_gib_16": per_value * 16 * 2**26 / 2**30}
    return "\n".join(rows), cost


# -------------------------------------------------------------------------------------------- bad images


def bad_images_section() -> str:
    from test_bad_images import _bad_folder

    from semzip.data.folders import embed_folder
    from semzip.models.registry import load_encoder

    kinds = {
        "rgb.png": "RGB PNG (control)", "cmyk.jpg": "CMYK JPEG", "gray16.png": "16-bit grayscale PNG",
        "palette.gif": "palette GIF", "palette_alpha.png": "palette PNG with transparency",
        "rgba.png": "RGBA PNG (alpha)", "exif_rot.jpg": "JPEG with EXIF orientation 6", "one_bit.bmp": "1-bit BMP",
        "sub/nested.jpg": "JPEG in a subfolder", "corrupt.jpg": "corrupt JPEG (scan data zeroed, cut)",
        "truncated.png": "truncated PNG (60 bytes)", "garbage.png": "text named .png", "zero.jpg": "zero-size file",
        "giant.png": "PNG declaring 200,000 x 200,000", "notes.txt": "non-image file",
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        root.mkdir()
        _bad_folder(root)
        os.environ["SEMZIP_CACHE"] = str(Path(tmp) / "cache")
        got = embed_folder(root, load_encoder("thumbnail"), recursive=True, use_cache=False)
        from semzip.data.images import load_image

        shapes = {n: load_image(root / n) for n in got.names}
    handled = {n: f"RGB {a.shape[1]}x{a.shape[0]}, values {a.min()}..{a.max()}" for n, a in shapes.items()}
    how = {"cmyk.jpg": "CMYK converted to RGB", "gray16.png": "16-bit scaled to 8 bits (0..65535 -> 0..255)",
           "palette.gif": "palette expanded", "palette_alpha.png": "transparent index composited on white",
           "rgba.png": "alpha composited on white", "exif_rot.jpg": "rotated upright (stored 40x24, shown 24x40)",
           "one_bit.bmp": "1-bit expanded"}
    refused = dict(got.skipped)
    rows = ["| file | kind | outcome | detail |", "|---|---|---|---|"]
    for name, kind in kinds.items():
        if name in handled:
            rows.append(f"| `{name}` | {kind} | handled | {handled[name]}; {how.get(name, 'read as is')} |")
        else:
            reason = re.sub(r"/tmp/\S+?/imgs/", "", refused.get(name, "MISSING")).replace("|", "\\|")
            rows.append(f"| `{name}` | {kind} | refused by name | {reason} |")
    return "\n".join(rows)


def many_bad_files() -> str:
    from PIL import Image

    from semzip.data.images import iter_images, list_images

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(5):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / f"good_{i}.png")
        head = (root / "good_0.png").read_bytes()[:40]
        for i in range(10_000):
            kind = i % 3
            data = b"" if kind == 0 else (b"junk %d" % i) if kind == 1 else head
            (root / f"bad_{i:05d}.{('jpg', 'png', 'png')[kind]}").write_bytes(data)
        skipped = []
        t0 = time.perf_counter()
        good = [p for p, _ in iter_images(list_images(root), on_skip=lambda p, r: skipped.append(p))]
        dt = time.perf_counter() - t0
    return (f"10,000 unreadable files (zero bytes, junk, truncated PNG headers) around 5 good ones: {len(good)} "
            f"images read, {len(skipped)} reported by name, {dt:.1f} s for 10,005 files "
            f"({dt / 10_005 * 1e3:.2f} ms per file); the run never aborted.")


# ---------------------------------------------------------------------------------------------- faults


def faults_section(kills: int = 12) -> str:
    from semzip.format import Container

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        np.save(tmp / "a.npy", rng.standard_normal((20000, 512)).astype(np.float32))
        np.save(tmp / "b.npy", rng.standard_normal((20000, 512)).astype(np.float32))
        cmd = [sys.executable, "-m", "semzip.cli", "compress", "--embeddings", "EMB", "--codec", "sq", "-o",
               "out.smz", "-f"]

        def start(emb: str) -> subprocess.Popen:
            return subprocess.Popen([emb if c == "EMB" else c for c in cmd], cwd=tmp, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)

        t0 = time.perf_counter()
        assert start("a.npy").wait(timeout=300) == 0
        duration = time.perf_counter() - t0
        old = (tmp / "out.smz").read_bytes()
        pick = random.Random(99)
        outcomes = {"old": 0, "new": 0, "corrupt": 0}
        for _ in range(kills):
            p = start("b.npy")
            time.sleep(pick.uniform(0.4, 1.1) * duration)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            now = (tmp / "out.smz").read_bytes()
            if now == old:
                outcomes["old"] += 1
                continue
            try:
                with Container.open(tmp / "out.smz") as c:
                    ok = all(r[1] for r in c.verify())
            except Exception:  # noqa: BLE001
                ok = False
            outcomes["new" if ok else "corrupt"] += 1
            old = now
        litter = sorted(f for f in os.listdir(tmp) if f.endswith(".tmp"))
        # kills inside the write itself: a 256 MiB archive body, killed as soon as its temp file has bytes
        writer = ("import sys; from semzip.format import atomic_write; "
                  "atomic_write(sys.argv[1], b'\\x89SMZ' + bytes(256 << 20))")
        in_write = {"killed mid-write": 0, "target intact": 0, "write finished first": 0}
        for _ in range(5):
            before = (tmp / "out.smz").read_bytes()
            p = subprocess.Popen([sys.executable, "-c", writer, "out.smz"], cwd=tmp)
            t_end = time.perf_counter() + 60
            while time.perf_counter() < t_end and p.poll() is None:
                temps = [f for f in tmp.iterdir() if f.name.startswith(".out.smz.") and f.name not in litter]
                if temps and temps[0].stat().st_size > 0:
                    p.send_signal(signal.SIGKILL)
                    in_write["killed mid-write"] += 1
                    break
                time.sleep(0.0005)
            p.wait(timeout=60)
            in_write["target intact"] += (tmp / "out.smz").read_bytes() == before
            if (tmp / "out.smz").read_bytes() != before:
                in_write["write finished first"] += 1
            for f in tmp.iterdir():
                if f.name.startswith(".out.smz.") and f.name not in litter:
                    f.unlink()
        # verify on a damaged archive: one block's byte flipped
        data = bytearray(old)
        data[len(data) - 100] ^= 0x40
        (tmp / "damaged.smz").write_bytes(bytes(data))
        r = subprocess.run([sys.executable, "-m", "semzip.cli", "verify", "damaged.smz"], cwd=tmp,
                           capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "120"})
    return (
        f"`semzip compress` (20,000 x 512 embeddings, sq, {duration:.1f} s per run) was SIGKILLed {kills} times at "
        f"random points between 0.4x and 1.1x its run time, over an existing archive. After each kill the "
        f"target held: the previous archive byte for byte **{outcomes['old']}** times, a complete new archive "
        f"passing every CRC **{outcomes['new']}** times, anything else **{outcomes['corrupt']}** times. "
        f"Temporary files left by killed runs ({len(litter)}: `.out.smz.*.tmp`) are never the target and never "
        "reused; the next run succeeds.\n\n"
        f"Kills inside the write itself (a 256 MiB body, SIGKILL as soon as its temporary file had bytes, 5 "
        f"times): killed mid-write {in_write['killed mid-write']} times, target byte-identical to the previous "
        f"archive {in_write['target intact']} times, write finished before the kill "
        f"{in_write['write finished first']} times.\n\n"
        f"`semzip verify` on the archive with one byte flipped inside the items (exit code {r.returncode}):\n\n"
        "```\n" + r.stdout.strip() + "\n```"
    )


# ------------------------------------------------------------------------------------------ determinism


def determinism_section() -> str:
    from test_golden import decoded_digests  # noqa: F401 - imported by the child too

    child = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_golden import decoded_digests; "
             "from pathlib import Path; print(json.dumps({Path(p).name: decoded_digests(Path(p).read_bytes()) "
             "for p in sys.argv[2:]}))")
    files = sorted(GOLDEN.glob("*.smz"))
    runs = []
    for threads in ("1", None):
        env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
        if threads:
            env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        r = subprocess.run([sys.executable, "-c", child, str(ROOT / "tests"), *map(str, files)],
                           capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(r.stdout))
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    rows = ["| archive | codes SHA-256 (process 1 = process 2 = pinned) | embeddings SHA-256 | identical |",
            "|---|---|---|---|"]
    for f in files:
        version, kind = f.stem.split("-", 1)
        a, b, pin = runs[0][f.name], runs[1][f.name], manifest[version][kind]
        same = a == b and a["codes_sha256"] == pin["codes_sha256"] and a["embeddings_sha256"] == pin["embeddings_sha256"]
        rows.append(f"| `{f.name}` | `{a['codes_sha256'][:16]}...` | `{a['embeddings_sha256'][:16]}...` | "
                    f"{'yes' if same else '**NO**'} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------- atheris


ATHERIS_TARGETS = ["Container", "entropy.Decoder", "compact", "codecs.sq", "CategoricalModel"]


def run_atheris(seconds: int) -> list[dict]:
    out = []
    for target in ATHERIS_TARGETS:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--atheris", "--target", target,
                   "--corpus", str(Path(tmp) / "corpus"), f"-max_total_time={seconds}", "-rss_limit_mb=4096",
                   "-print_final_stats=1"]
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False, timeout=seconds + 600)
            log = r.stdout + r.stderr
            crashes = sorted(p.name for p in Path(tmp).glob("crash-*")) + sorted(p.name for p in Path(tmp).glob("oom-*"))
            runs = re.search(r"Done (\d+) runs in (\d+) second", log)
            cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
            corpus = len(list((Path(tmp) / "corpus").glob("*")))
        out.append({"target": target, "rc": r.returncode, "runs": int(runs.group(1)) if runs else None,
                    "seconds": int(runs.group(2)) if runs else None, "cov": cov[-1][0] if cov else None,
                    "ft": cov[-1][1] if cov else None, "corpus": corpus, "crashes": crashes,
                    "tail": log.strip().splitlines()[-3:] if r.returncode else []})
        print(out[-1], flush=True)
    (RESULTS / "atheris.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def atheris_section() -> str:
    path = RESULTS / "atheris.json"
    if not path.is_file():
        return "Not run (`python benchmarks/reliability.py --atheris 60` after `pip install atheris`)."
    rows = ["| target (substring) | runs | seconds | coverage edges | features | corpus | crashes |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for a in json.loads(path.read_text()):
        rows.append(f"| `{a['target']}` | {a['runs']} | {a['seconds']} | {a['cov']} | {a['ft']} | {a['corpus']} | "
                    f"{', '.join(a['crashes']) or 'none'} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------- fuzzing


def fuzz_section() -> str:
    path = RESULTS / "fuzz.json"
    if not path.is_file():
        return "Not run (`python benchmarks/fuzz.py --seconds 300`)."
    f = json.loads(path.read_text())
    rows = [("| entry point | inputs tried | decoded OK | rejected | other exceptions | hangs (> 2 s) | time (s) |"
            " rejected by error class |"), "|---|---:|---:|---:|---:|---:|---:|---|"]
    tot = {k: 0 for k in ("tried", "ok", "rejected", "other", "slow")}
    for t in f["targets"]:
        cls = ", ".join(f"{k} {v}" for k, v in t["errors"].items())
        if t["causes"]:
            cls += " (Pillow errors inside BadImageError: " + ", ".join(f"{k} {v}" for k, v in t["causes"].items()) + ")"
        rows.append(f"| `{t['name']}` | {t['tried']} | {t['ok']} | {t['rejected']} | {t['other']} | {t['slow']} | "
                    f"{t['seconds']:.0f} | {cls} |")
        for k in tot:
            tot[k] += t[k]
    rows.append(f"| **total** | **{tot['tried']}** | {tot['ok']} | {tot['rejected']} | **{tot['other']}** | "
                f"**{tot['slow']}** | {f['wall_s']:.0f} | |")
    fails = [fl for t in f["targets"] for fl in t["failures"]]
    tail = "\n\nFailures in this run: " + ("none." if not fails else "; ".join(x["error"] for x in fails[:10]))
    return f"`{f['command']}` on {f['machine']}, {f['date']}.\n\n" + "\n".join(rows) + tail


# ---------------------------------------------------------------------------------------------- crafted


_GROUPS = [("params.", "header parameters (schema fields, table contradictions)"),
           ("codec", "codec name"), ("n_items", "item count"), ("writer", "writer"), ("models", "models"),
           ("format version", "format version"), ("sections", "sections"), ("index", "item index"),
           ("names", "item names")]


def _group(field: str) -> str:
    return next(label for prefix, label in _GROUPS if field.startswith(prefix))


def crafted_section() -> str:
    """Every crafted archive of benchmarks/crafted.py through info/verify/verify --deep/decompress/add."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import crafted

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = crafted.run_all(Path(tmp))
    elapsed = time.perf_counter() - t0
    s = crafted.summary(outcomes)
    head = ("| codec | fields | crafted files | refused | decoded identically | decoded differently | crashes | "
            "outcome not as expected |")
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for codec, r in s["per_codec"].items():
        bad = sum(1 for o in outcomes if o.craft.codec == codec and not o.ok)
        rows.append(f"| {codec} | {r['fields']} | {r['tried']} | {r.get('refused', 0)} | {r.get('identical', 0)} | "
                    f"{r.get('different', 0)} | {r.get('crash', 0)} | {bad} |")
    t = s["total"]
    rows.append(f"| **total** | {t['fields']} | **{t['tried']}** | {t.get('refused', 0)} | {t.get('identical', 0)} | "
                f"**{t.get('different', 0)}** | **{t.get('crash', 0)}** | **{len(s['failures'])}** |")
    groups: dict[str, dict] = {}
    for o in outcomes:
        g = groups.setdefault(_group(o.craft.field), {"tried": 0, "refused": 0, "identical": 0, "different": 0})
        g["tried"] += 1
        g[o.result if o.result in g else "different"] += 1
    grows = ["| what was crafted | files | refused | decoded identically | decoded differently |", "|---|---:|---:|---:|---:|"]
    grows += [f"| {k} | {v['tried']} | {v['refused']} | {v['identical']} | {v['different']} |" for k, v in groups.items()]
    diff: dict[str, list[str]] = {}
    for o in outcomes:
        if o.result == "different":
            diff.setdefault(o.craft.label, []).append(o.craft.codec)
    drows = ["| crafted file | codecs | why no check can tell |", "|---|---|---|"]
    drows += [f"| {label} | {', '.join(codecs)} | {crafted.UNDETECTABLE.get(label, '**not expected**')} |"
              for label, codecs in sorted(diff.items())]
    fails = "none." if not s["failures"] else "; ".join(s["failures"][:10])
    return (f"`python benchmarks/reliability.py --crafted-only` on {_machine()}, {datetime.date.today().isoformat()}, "
            f"{elapsed:.0f} s ({t['tried']} files x 4-5 commands, in process).\n\n" + "\n".join(rows)
            + "\n\n" + "\n".join(grows) + "\n\nDecoded differently: only lies that no checksum can tell (every CRC "
            "stays valid; the reason says why no other check catches them either). `tests/test_crafted.py` asserts "
            "this list:\n\n"
            + "\n".join(drows) + f"\n\nOutcomes not as expected in this run: {fails}")


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


CRAFTED_HEADING = "## 9. Crafted archives: valid CRCs, lying content"


def update_crafted_only() -> None:
    path = RESULTS / "reliability.md"
    md = path.read_text()
    section = CRAFTED_HEADING + "\n\n" + CRAFTED_INTRO + "\n\n" + crafted_section() + "\n"
    md = md[: md.index(CRAFTED_HEADING)].rstrip("\n") if CRAFTED_HEADING in md else md.rstrip("\n")
    path.write_text(md + "\n\n" + section)
    print(f"updated section 9 of {path}")


CRAFTED_INTRO = """Random damage is caught by the checksums; these files lie with every CRC valid (a malicious producer,
a buggy writer, a future version). `benchmarks/crafted.py` derives them from a small archive of each codec
(format 1.1; items named `car [red].png`, `[/x]`, `photo.jpg` + `photo.png` + `Photo.JPG`, `2024/beach.jpg`
+ `2024__beach.jpg`, a backslash, a reserved output name, ...): one file per schema field and refused value
(wrong JSON type, out of bounds, NaN/infinite, control characters, unknown enumeration member, deleted), per
value in bounds that contradicts the stored tables (bits, dim, n_atoms, sparsity, atom_bits, steps), per
generic header field, format version, section edit, index edit and hostile item name. Each runs through
`semzip info`, `verify`, `verify --deep`, `decompress` (sq: to .npy; collection: to .npy and rendered to a
folder; image-text: to a folder, with a stand-in caption coder and the real tiny LIC) and, for collections,
`add`. *Refused* means: one `semzip: error:` line and exit 2 (verify: a CORRUPT row and exit 1, or that line and 2 when
the file cannot be opened as an archive at all), no output and no temporary file left,
the archive unchanged, `verify --deep` refusing exactly when `decompress` does, and `add` refusing too.
*Decoded identically*: the same output bytes and file names as the seed (valid variations: a later minor
version with unknown fields, sections in another order, an optional field dropped, a writer string with
markup, ...). Each crafted file states its expected outcome; `tests/test_crafted.py` runs the whole set
(about 45 s) and asserts every one.

The files of issue 16 are among them, now refused before any decoding: a collection declaring 2^31 items
with its names dropped (item count), an image-text codec field over collection sections (codec name), rich
markup in codec and section names (item names with markup are valid: they decode and print literally), a
non-numeric `pixels_per_item`, names `.`, NUL, empty or 300 bytes, malformed image-text scale and refiner
fields, a dropped `caption_check`, sq steps of 1e308, 0 or negative, duplicate names, a names zip bomb under
`verify --deep`, `add` on an undecodable archive or a later minor version."""


# ---------------------------------------------------------------------------------------------- report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", help=argparse.SUPPRESS)
    ap.add_argument("--atheris", type=int, default=0, help="first run atheris this many seconds per target")
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--crafted-only", action="store_true", help="re-measure only section 9 (crafted archives)")
    args = ap.parse_args()
    if args.crafted_only:
        update_crafted_only()
        return 0
    if args.check:
        print(json.dumps(run_check(args.check)))
        return 0
    if args.atheris:
        run_atheris(args.atheris)
    sections = {}
    print("hostile inputs ...", flush=True)
    sections["hostile"], cost = hostile_section()
    sections.update(cost)
    print("bad images ...", flush=True)
    sections["bad"] = bad_images_section()
    sections["many"] = many_bad_files()
    print("faults ...", flush=True)
    sections["faults"] = faults_section(args.kills)
    print("determinism ...", flush=True)
    sections["det"] = determinism_section()
    print("crafted archives ...", flush=True)
    sections["crafted"] = CRAFTED_INTRO + "\n\n" + crafted_section()
    md = REPORT.format(
        date=datetime.date.today().isoformat(),
        machine=_machine(), crafted_heading=CRAFTED_HEADING,
        fuzz=fuzz_section(), atheris=atheris_section(),
        found="\n".join(f"| {a} | {b} | {c} | `{d}` |" for a, b, c, d in FOUND), **sections,
    )
    (RESULTS / "reliability.md").write_text(md)
    print(f"wrote {RESULTS / 'reliability.md'}")
    return 0


REPORT = """# Reliability: hostile files, faults, determinism

Generated by `python benchmarks/reliability.py` on {machine}, {date} (the fuzzing table comes from
`benchmarks/results/fuzz.json`, written by `benchmarks/fuzz.py`; atheris from `atheris.json`). How to run it and
what the limits mean: docs/format.md, section "Reliability".

Contract for every decoder: any input decodes, or raises a `semzip.errors.SemzipError` subclass with a message;
never another exception, a hang, a process abort or an unbounded allocation.

## 1. Fuzzing (seeded, structure-aware mutator)

Inputs are mutations of valid seeds (real archives, caption files, model tables, item records, LIC streams,
image files in 9 formats/modes). For container-based targets, half the inputs mutate one section, one item
block or one header field and are re-packed with valid lengths and CRC32s, so the codec's own parsing is
reached. The CI-sized pass (`tests/test_fuzz.py`, seeded) runs about 105,000 inputs in about 12 s.

{fuzz}

The caption payload decoder driven by a transformer is too slow per input for these campaigns with the real
135M model; `tests/test_text.py::test_fuzz_caption_payloads_under_a_language_model` sends 1,500 seeded garbage
and mutated payloads per CI run through it with a 1-layer model (SmolLM2's tokenizer, ~10 s): each decodes to a
string or is refused with a SemzipError. Image-text items also carry a CRC-16 of the caption, so a decode
that desynchronises (another torch build or CPU) is an error, not a wrong caption.

## 2. Coverage-guided fuzzing (atheris / libFuzzer)

`python benchmarks/fuzz.py --atheris --target NAME -max_total_time=S` with only semzip's modules
instrumented, starting from the same seeds.

{atheris}

## 3. Crashes found and fixed (each is a regression test)

| found by | input | now | regression test |
|---|---|---|---|
{found}

## 4. Hostile inputs: refused early, bounded memory

Each row ran in a fresh process. "peak RSS growth" is the growth of the process's peak resident memory while
the decoder ran (the input was built before); "tracemalloc peak" counts Python and numpy allocations. Limits
are configurable: `Container.open(path, limits=Limits(...))`, or `SEMZIP_LIMITS="max_items=...,max_values=..."`
for a whole process (CLI included), `load_image(max_pixels=...)`, `lic.max_pixels`,
`semzip.entropy.coder.MAX_DECODE_COUNT` or `Decoder(data, max_count=...)`.

{hostile}

**What the limits do not bound.** Within the limits, decoding costs memory and time in proportion to what the
file *declares*, not to its size: the accepted row above is a 448-byte archive that decodes 2**26 values using
about {sq_bytes_per_value:.0f} bytes and {sq_ns_per_value:.0f} ns per value (the block's int64 symbols and the float32 output they are dequantised into). No limit can be
derived from the stream length, because the range coder drops trailing zero bytes and a run of the first
symbol legitimately codes to an empty stream. At the default `max_values` = 2**30, a file of a few KB split
into 16 such blocks could therefore make the sq decoder use on the order of {sq_gib_16:.0f} GiB (extrapolated, not run).
Default limits are sized for real collections (10^6 items x 1024 dims); for untrusted archives set
`SEMZIP_LIMITS=max_values=...` to what you expect to decode.

## 5. Bad images

A folder with one file of each kind, compressed with `embed_folder` (the path `semzip compress FOLDER` takes):
the good ones are compressed, each bad one is reported by name with its reason, and the run goes on.
(`tests/test_bad_images.py`.)

{bad}

{many}

## 6. Faults: killing compress

Archives are written to `.NAME.XXXX.tmp` beside the target, fsynced, then renamed over it
(`semzip.format.atomic_write`). (`tests/test_faults.py`.)

{faults}

## 7. Determinism

The stored golden archives (`tests/data/golden/`, one set per format version) decoded by two separate
processes (one with 1 BLAS/OpenMP thread, one with the default), compared with the digests pinned when they
were written. (`tests/test_determinism.py` also covers freshly written sq/collection archives and a tiny-LIC
stream; `tests/test_golden.py` pins the encoder's bytes.)

{det}

**CPU vs GPU: not measured.** No GPU machine was lent to this session. By construction, embedding decoding
(sq, collection) runs in numpy on the CPU whatever device encoded, and the tiny LIC's hyper-synthesis runs on
the CPU in `deterministic_mode` with a checksum of the scale indices that refuses a mismatched decode; a
GPU decode path, if added, must be compared against these digests.

## 8. Untrusted weights

No user-supplied file is ever unpickled: LIC weights are safetensors only; CompressAI checkpoints go through
`torch.load(weights_only=True)`; embeddings `np.load(allow_pickle=False)`; transformers/diffusers load with their
own `weights_only=True` default (transformers 5, diffusers 0.42, torch 2.13 defaults to it as well).
`tests/test_untrusted.py` offers a code-running pickle as LIC weights (.safetensors/.pt/.pth), as a
CompressAI checkpoint and as embeddings (.npy, object array and raw pickle): each is refused with a clear error
and the pickle's payload never runs; a source scan fails the test if an unsafe loader appears. Model
fingerprints are checked before decoding: the image-text header names the LIC and language model by
fingerprint (`check_models` runs first), each LIC stream carries its model's fingerprint (checked before any
entropy decoding, tested), caption files carry a fingerprint byte.

{crafted_heading}

{crafted}
"""


if __name__ == "__main__":
    sys.exit(main())
