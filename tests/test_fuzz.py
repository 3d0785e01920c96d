"""CI-sized fuzzing of every decoder entry point (benchmarks/fuzz.py has the long run), plus the crashes it found.

Contract: any input decodes or raises a ``SemzipError`` subclass. The run is seeded, so a failure reproduces.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import crashes, tally

from semzip.codecs.collection import CollectionCodec
from semzip.codecs.embeddings import ScalarQuantCodec
from semzip.entropy import MAX_ALPHABET, CategoricalModel, Decoder, QuantizedGaussianTable
from semzip.entropy.coder import MAX_DECODE_COUNT
from semzip.errors import CorruptedSectionError, ResourceLimitError, SemzipError
from semzip.format import Container, SectionType, pack

N_INPUTS = 130_000  # across all targets, split by weight (slow decoders get 1/cost of their share)


def _load_fuzz():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("semzip_bench_fuzz", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses needs the module registered
    spec.loader.exec_module(mod)
    return mod


fuzz = _load_fuzz()


@pytest.fixture(scope="module")
def targets():
    return fuzz.build_targets()


def test_fuzz_every_decoder(targets):
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        stats = fuzz.fuzz(targets, n_inputs=N_INPUTS, seed=0)
    elapsed = time.perf_counter() - t0
    total = sum(s.tried for s in stats)
    assert total >= 100_000
    failures = [f"{s.name}: {msg} (input {d.hex()[:200]})" for s in stats for d, msg in s.failures]
    assert not failures, "\n".join(failures[:10])
    assert all(s.other == 0 and s.slow == 0 for s in stats)
    # every target ran and its seeds decode (a mutator that only produces rejects would test little)
    for s in stats:
        assert s.tried > 0 or "collection" in s.name, s.name
        assert s.ok > 0 or s.tried == 0, f"{s.name}: no input decoded"
    assert elapsed < 60


def test_mutators_are_reproducible(targets):
    import random

    t = targets[0]
    a = [fuzz.next_input(random.Random(3), t) for _ in range(5)]
    b = [fuzz.next_input(random.Random(3), t) for _ in range(5)]
    assert a == b


# --------------------------------------------------------------------------- regressions (bugs the fuzzer found)


def _repack_header(data: bytes, edit) -> bytes:
    """Re-pack a valid container after ``edit(meta)`` changed its header JSON (CRCs recomputed)."""
    from semzip.format.container import _section_record

    c = Container.from_bytes(data)
    meta = json.loads(fuzz._header_payload(data))
    edit(meta)
    pre = data[:6]
    out = [pre, _section_record(SectionType.HEADER, "header", json.dumps(meta).encode(), pre)]
    out += [_section_record(s.type, s.name, c.read(s.name)) for s in c.sections]
    return b"".join(out)


def _sq_archive() -> bytes:
    x = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    enc = ScalarQuantCodec(block_size=4).compress(x)
    return pack(enc.header, enc.blobs, enc.blocks, enc.names)


def test_header_with_infinite_item_count_is_corrupt():
    # was: OverflowError from int(float("inf")) in Container._parse_header_json
    data = _repack_header(_sq_archive(), lambda m: m.update(n_items=float("inf")))
    with pytest.raises(CorruptedSectionError):
        Container.from_bytes(data)


@pytest.mark.parametrize("edit", [
    lambda p: p.update(dim=10**12),  # was: constriction aborted the process allocating 32 TB
    lambda p: p.update(dim=2**40, step=1.0),
])
def test_sq_huge_dimension_is_refused_not_allocated(edit):
    data = _repack_header(_sq_archive(), lambda m: edit(m["params"]))
    c = Container.from_bytes(data)
    with pytest.raises(ResourceLimitError):
        ScalarQuantCodec.from_header(c.header).decompress(c)


@pytest.mark.parametrize("edit", [
    lambda p: p.pop("bits"),  # was: KeyError
    lambda p: p.pop("block_size"),  # was: KeyError
    lambda p: p.update(bits="x"),  # was: ValueError
    lambda p: p.update(bits=float("inf")),  # was: OverflowError
    lambda p: p.update(dim=float("nan")),  # was: ValueError
    lambda p: p.update(step=float("inf")),  # was: float overflow to inf embeddings
    lambda p: p.update(dim=0),
])
def test_sq_malformed_parameters_are_corrupt(edit):
    data = _repack_header(_sq_archive(), lambda m: edit(m["params"]))
    c = Container.from_bytes(data)
    with pytest.raises(CorruptedSectionError):
        ScalarQuantCodec.from_header(c.header).decompress(c)


@pytest.fixture(scope="module")
def collection_archive(targets):
    seeds = next(t for t in targets if "collection" in t.name).seeds
    if not seeds:
        pytest.skip("the collection codec needs torch to encode")
    return seeds[0]


@pytest.mark.parametrize("edit", [
    lambda p: p.pop("dim"),  # was: KeyError in load_state
    lambda p: p.pop("atom_step"),  # was: KeyError in load_state
    lambda p: p.update(atom_step=None),  # was: TypeError
    lambda p: p.update(dim=float("inf")),  # was: OverflowError
    lambda p: p.update(weight_clip=float("inf")),  # was: OverflowError in weight_levels
    lambda p: p.update(weight_clip=1e308),  # was: OverflowError (clip / step overflows to inf)
    lambda p: p.update(n_atoms=10**9),  # was: constriction aborted the process on a 200 GB allocation
])
def test_collection_malformed_parameters_are_refused(collection_archive, edit):
    data = _repack_header(collection_archive, lambda m: edit(m["params"]))
    with pytest.raises(SemzipError):
        c = Container.from_bytes(data)
        CollectionCodec.from_header(c.header).decompress(c)


def test_collection_weight_grid_must_fit_the_alphabet():
    with pytest.raises(SemzipError):
        CollectionCodec(weight_step=1e-9, weight_clip=MAX_ALPHABET)


@pytest.mark.parametrize("call", [
    lambda d: d.decode_categorical(CategoricalModel.from_counts([1, 2, 3]), MAX_DECODE_COUNT + 1),
    lambda d: d.decode_categorical(CategoricalModel.uniform(1), 2**40),  # was: MemoryError from np.zeros
    lambda d: d.decode_uniform(1000, 2**45),
    lambda d: d.decode_uniform(1, 2**45),
])
def test_decoder_refuses_absurd_counts_without_allocating(call):
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ResourceLimitError):
            call(Decoder(b"\x01\x02\x03\x04"))
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


def test_decoder_parametric_on_garbage_is_contained():
    """50 garbage streams of 32 bytes read as 100 parametric symbols: each decodes to 100 values (the coder
    reads past a short stream's end as a valid state), and the end-of-stream check refuses most of them."""
    table = QuantizedGaussianTable(num_scales=4)
    garbage = [np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes() for seed in range(50)]

    def decode(data: bytes, finish: bool) -> None:
        dec = Decoder(data)
        assert dec.decode_parametric(np.arange(100) % 4, table).shape == (100,)
        if finish:
            dec.finish()

    assert tally(lambda d: decode(d, False), garbage) == {"decoded": 50}
    counts = tally(lambda d: decode(d, True), garbage)
    assert not crashes(counts) and set(counts) <= {"decoded", "EntropyDecodeError"}, counts
    assert counts["EntropyDecodeError"] >= 40 and counts["decoded"] >= 1, counts


def test_image_text_block_declaring_many_items_is_corrupt(targets):
    # was: decode_items (now decompress) looped over all 2**31 declared items, decoding the same block each time (a hang)
    seeds = next(t for t in targets if "image_text decompress" in t.name).seeds
    if not seeds:
        pytest.skip("the image-text target needs torch (tiny LIC)")
    from semzip.codecs.image_text import stream_split
    from semzip.format.container import _pack_index

    c = Container.from_bytes(seeds[0])
    blocks = [(b.n_items, p) for b, p in c.iter_blocks()]
    blocks[0] = (2**31, blocks[0][1])

    def edit(meta):
        meta["n_items"] = sum(n for n, _ in blocks)

    data = _repack_header(seeds[0], edit)
    c2 = Container.from_bytes(data)
    parts = {"index": _pack_index(blocks), "items": b"".join(p for _, p in blocks)}
    from semzip.format.container import _section_record

    body = [_section_record(s.type, s.name, parts.get(s.name, c2.read(s.name))) for s in c2.sections]
    data = data[: c2.header_size] + b"".join(body)
    hostile = Container.from_bytes(data)
    assert hostile.header.n_items == 2**31 + 1
    t0 = time.perf_counter()
    with pytest.raises(CorruptedSectionError, match="declares 2147483648 items"):
        fuzz._image_text_codec().decompress(hostile)
    with pytest.raises(CorruptedSectionError):
        stream_split(hostile)
    assert time.perf_counter() - t0 < 1


# a 504-byte TIFF the image fuzzer produced: Pillow 13 raises TypeError ("'float' object cannot be interpreted as an
# integer") while loading it. load_image used to let that escape, which aborted a whole folder run.
_TIFF_TYPEERROR = bytes.fromhex(
    "49492a00080000000a0000010400010000000a00000001010400010000000c0000000201030003000000860000000301"
    "0300010000000100000006010300010000000200000011010c00010000008c0000001501030001000000030000001601"
    "0400010000000c0000001701040001000000680100001c010300010000000100000000000000080008000800153ccc94"
    "186e7a28bb1c63836d95bcf348a5b14a00f84c50e39578c507b45f17a8ed34a04cbdb837d3a7aed16dc1e01ad8647a25"
    "b24ade468f659c322dbebf90ea34d82bf59f9af7c8c90d5e153136da204b7dd8f6b4368ab40dad5d96aaaa858d327e1f"
    "7a88c564048634bd6361e76458587a178bea8fbdf1d6bdcfd1407a574291519d941a7063b4162b8267a95432ed3e2547"
    "563988ee2069aae1fe2489e00d962cc3ef8902106ad83caa6743b34e5ec37ec7832871de90f60056c4ae8fa9dfae8b8f"
    "a952aa9cc8e20688daa3a4635ab713dcdff5221de3664461a8297ca8b703ce55cc20916e6f8fe37a368a2a9de5e1229f"
    "e33369b5bc73a2aa5aa693b182556eeb2f2503d9fc3c4332997bd135df76cecce87f9b8f307fece705a9532223caf484"
    "6182d3be1036dd7da7c6a2bb8b3a2ffd02b0e03b0c6554756cf01ef00bef54b90072aca0cd27669c07d56a3e38a50c3e"
    "4d41ba97e6b24b521f3d9aba4b57ccf41512c17e6ca1c111"
)


def test_tiff_that_makes_pillow_raise_type_error_is_a_bad_image(tmp_path):
    import warnings

    from PIL import Image

    from semzip.data.images import iter_images, list_images, load_image
    from semzip.errors import BadImageError

    (tmp_path / "fuzzed.tif").write_bytes(_TIFF_TYPEERROR)
    Image.new("RGB", (4, 4)).save(tmp_path / "good.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(BadImageError, match=r"fuzzed\.tif.*TypeError"):
            load_image(tmp_path / "fuzzed.tif")
        skipped = []
        got = [p.name for p, _ in iter_images(list_images(tmp_path), on_skip=lambda p, r: skipped.append(p.name))]
    assert got == ["good.png"] and skipped == ["fuzzed.tif"]
