"""Hostile inputs: declared sizes that would exhaust memory are refused early, before anything is allocated."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from semzip.codecs.embeddings import ScalarQuantCodec
from semzip.data.images import load_image
from semzip.errors import CorruptedSectionError, ResourceLimitError, SemzipError
from semzip.format import MAGIC, Container, Header, Limits, SectionType, compact, pack
from semzip.format.container import _section_record
from semzip.format.varint import encode_uvarint

PEAK = 1 << 20  # no hostile input may make the reader allocate more than 1 MiB


class _peak:
    def __enter__(self):
        tracemalloc.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.peak = tracemalloc.get_traced_memory()[1]
        self.seconds = time.perf_counter() - self.t0
        tracemalloc.stop()


def _container(header_meta: dict, body: list[tuple[SectionType, str, bytes]] = ()) -> bytes:
    pre = MAGIC + bytes([1, 0])
    meta = {"codec": "sq", "params": {}, "models": [], "n_items": 0, "writer": "", **header_meta}
    meta.setdefault("sections", [[int(t), n] for t, n, _ in body])
    out = [pre, _section_record(SectionType.HEADER, "header", json.dumps(meta).encode(), pre)]
    out += [_section_record(t, n, p) for t, n, p in body]
    return b"".join(out)


def _refused(data: bytes, exc=(ResourceLimitError, CorruptedSectionError), limits: Limits | None = None, read=None):
    with _peak() as pk, pytest.raises(exc):
        c = Container.from_bytes(data, **({"limits": limits} if limits else {}))
        if read:
            read(c)
    # parsing the (size-limited) JSON header costs memory in proportion to it; nothing more is allocated
    assert pk.peak < max(PEAK, 20 * len(data)), f"allocated {pk.peak} bytes before refusing"
    assert pk.seconds < 1


@pytest.mark.parametrize("n_items", [2**33, 2**63, 10**30, -1])
def test_huge_item_count_refused(n_items):
    _refused(_container({"n_items": n_items}), ResourceLimitError)


def test_item_count_above_configured_limit():
    _refused(_container({"n_items": 11}), ResourceLimitError, Limits(max_items=10))


def test_huge_section_length_refused_without_reading():
    pre = MAGIC + bytes([1, 0])
    body = bytes([SectionType.HEADER, 6]) + b"header" + encode_uvarint(2**62) + b"{}"
    _refused(pre + body + b"\0\0\0\0", CorruptedSectionError)


def test_header_above_limit_refused():
    data = _container({"writer": "x" * 5000})
    _refused(data, ResourceLimitError, Limits(max_header_bytes=1000))


def test_too_many_sections_refused():
    body = [(SectionType.BLOB, f"b{i}", b"x") for i in range(5)]
    _refused(_container({}, body), ResourceLimitError, Limits(max_sections=4))
    listed = [[2, f"b{i}"] for i in range(10_000)]  # listed, not present: refused by the limit first
    _refused(_container({"sections": listed}), ResourceLimitError)


@pytest.mark.parametrize("n_blocks", [2**40, 2**24 + 1, 10**6])
def test_huge_block_count_refused(n_blocks):
    index = encode_uvarint(n_blocks) + encode_uvarint(1) + encode_uvarint(1) + zlib.crc32(b"a").to_bytes(4, "little")
    data = _container({"n_items": 1}, [(SectionType.INDEX, "index", index), (SectionType.ITEMS, "items", b"a")])
    _refused(data, CorruptedSectionError, read=lambda c: c.blocks)


def test_block_count_above_configured_limit():
    data = pack(Header("sq"), blocks=[(1, b"a"), (1, b"b"), (1, b"c")])
    Container.from_bytes(data).blocks  # noqa: B018 - fine under the default limits
    _refused(data, CorruptedSectionError, Limits(max_blocks=2), read=lambda c: c.blocks)


def test_block_declaring_billions_of_items_refused():
    # index says one block of 2**32 items, payload 4 bytes: the decoder must not allocate 2**32 * d symbols
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    enc = ScalarQuantCodec().compress(x)
    index = encode_uvarint(1) + encode_uvarint(2**32) + encode_uvarint(4) + zlib.crc32(b"abcd").to_bytes(4, "little")
    body = [(SectionType.BLOB, "model", enc.blobs["model"]), (SectionType.INDEX, "index", index),
            (SectionType.ITEMS, "items", b"abcd")]
    # blocks larger than the header's block_size are refused by the schema, before any decoding
    c = Container.from_bytes(_container({"codec": "sq", "params": enc.header.params, "n_items": 2**32}, body))
    with _peak() as pk, pytest.raises(CorruptedSectionError, match="declares 4294967296 items"):
        ScalarQuantCodec.from_header(c.header).decompress(c)
    assert pk.peak < PEAK
    # a header whose block_size allows it: the max_values limit refuses the decode before allocating
    params = {**enc.header.params, "block_size": 2**32}
    c = Container.from_bytes(_container({"codec": "sq", "params": params, "n_items": 2**32}, body))
    with _peak() as pk, pytest.raises(ResourceLimitError):
        ScalarQuantCodec.from_header(c.header).decompress(c)
    assert pk.peak < PEAK


def test_names_bomb_is_bounded_by_item_count():
    # names that decompress fine but disagree with n_items are refused
    names = zlib.compress(b"a\n" * 1000, 9)
    data = _container({"n_items": 0}, [(SectionType.BLOB, "names", names)])
    with pytest.raises(CorruptedSectionError):
        Container.from_bytes(data).names  # noqa: B018


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(100_000, 100_000), (2**31 - 1, 2**31 - 1), (1_000_000, 200)])
def test_image_with_huge_declared_size_refused(tmp_path, size):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header(*size))
    with _peak() as pk, pytest.raises(ResourceLimitError):
        load_image(p)
    assert pk.peak < PEAK and pk.seconds < 1


def test_image_limit_is_configurable(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(_png_header(200, 200))
    with pytest.raises(ResourceLimitError):
        load_image(p, max_pixels=100 * 100)


FP = "0123456789abcdef"


@pytest.mark.parametrize("count", [2**62, 10**9, 1000])
def test_caption_file_with_absurd_record_count_refused(count):
    head = bytes([compact.COMPACT_MAGIC, (compact.COMPACT_VERSION << 5) | 0x10 | 1, bytes.fromhex(FP)[0]])
    data = head + encode_uvarint(count) + b"\x01\x00\x00\x00"
    with _peak() as pk, pytest.raises(CorruptedSectionError):
        compact.unpack_lines(data, fingerprint=FP)
    assert pk.peak < PEAK and pk.seconds < 0.1


def test_caption_file_overlong_count_varint_refused():
    head = bytes([compact.COMPACT_MAGIC, (compact.COMPACT_VERSION << 5) | 0x10 | 1, bytes.fromhex(FP)[0]])
    with pytest.raises(SemzipError):
        compact.read_header(head + b"\xff" * 40)


@pytest.mark.parametrize("n_items, exc, match", [
    (1, CorruptedSectionError, "names of at most 4096 bytes"),  # structural: n_items names cannot be that long
    (2**20, ResourceLimitError, "max_names_bytes"),  # enough items declared: the configured limit refuses it
])
def test_names_zip_bomb_refused_while_inflating(n_items, exc, match):
    # 64 KB of zlib that inflates to 64 MB: refused while inflating, never inflated whole
    bomb = zlib.compress(b"a" * (64 << 20), 9)
    assert len(bomb) < 100_000
    data = _container({"n_items": n_items}, [(SectionType.BLOB, "names", bomb)])
    c = Container.from_bytes(data, limits=Limits(max_names_bytes=1 << 20))
    with _peak() as pk, pytest.raises(exc, match=match):
        c.names  # noqa: B018
    assert pk.peak < 4 << 20


def test_long_item_names_are_refused_when_writing():
    from semzip.errors import InvalidInputError
    from semzip.format import NamesPacker

    longest = "/".join(["\u00e9" * 127] * 16)  # 4079 bytes in parts of 254
    with pytest.raises(InvalidInputError, match="at most 4096 bytes"):
        pack(Header("sq"), blocks=[(1, b"a")], names=[longest + "/xxxxxxxxxxxxxxxxx"])
    with pytest.raises(InvalidInputError, match="at most 4096 bytes"):
        NamesPacker().add([longest + "/\u00e9" * 9])
    with pytest.raises(InvalidInputError, match="at most 255 bytes"):
        NamesPacker().add(["\u00e9" * 128])
    assert Container.from_bytes(pack(Header("sq"), blocks=[(1, b"a")], names=[longest])).names[0] == longest


def test_default_names_of_billions_of_items_are_not_listed():
    # no names section, index of one block declaring 2**32 items: names are generated on demand
    index = encode_uvarint(1) + encode_uvarint(2**32) + encode_uvarint(1) + zlib.crc32(b"a").to_bytes(4, "little")
    data = _container({"n_items": 2**32}, [(SectionType.INDEX, "index", index), (SectionType.ITEMS, "items", b"a")])
    c = Container.from_bytes(data)
    with _peak() as pk:
        names = c.names
        assert len(names) == 2**32 and names[-1] == "item_4294967295" and names.index("item_00007") == 7
        assert c.verify()[-1] == ("blocks", True, "1 blocks")
    assert pk.peak < PEAK


@pytest.mark.parametrize("codec", ["sq", "collection"])
def test_decoded_size_above_max_values_refused(codec):
    x = np.random.default_rng(0).standard_normal((40, 12)).astype(np.float32)
    if codec == "sq":
        enc = ScalarQuantCodec(block_size=8).compress(x)
        cls = ScalarQuantCodec
    else:
        pytest.importorskip("torch")
        from semzip.codecs.collection import CollectionCodec

        enc = CollectionCodec(n_atoms=8, sparsity=2, max_epochs=2, block_size=8).compress(x)
        cls = CollectionCodec
    data = pack(enc.header, enc.blobs, enc.blocks, enc.names)
    c = Container.from_bytes(data, limits=Limits(max_values=40 * 12 - 1))
    with pytest.raises(ResourceLimitError, match="max_values"):
        cls.from_header(c.header).decompress(c)
    c = Container.from_bytes(data, limits=Limits(max_values=40 * 12))
    assert cls.from_header(c.header).decompress(c).shape == (40, 12)


def test_limits_from_environment(monkeypatch):
    from semzip.format import default_limits

    monkeypatch.setenv("SEMZIP_LIMITS", "max_items=10, max_values=2e9")
    lim = default_limits()
    assert lim.max_items == 10 and lim.max_values == 2_000_000_000 and lim.max_blocks == Limits().max_blocks
    _refused(_container({"n_items": 11}), ResourceLimitError)  # Container picks the environment's limits up
    for bad in ("max_itmes=3", "max_items=x", "max_items=-1"):
        monkeypatch.setenv("SEMZIP_LIMITS", bad)
        with pytest.raises(SemzipError, match="SEMZIP_LIMITS"):
            default_limits()


def test_decoder_count_limit_is_configurable():
    from semzip.entropy import CategoricalModel, Decoder

    model = CategoricalModel.from_counts([5, 1])
    assert Decoder(b"", max_count=100).decode_categorical(model, 100).shape == (100,)
    with pytest.raises(ResourceLimitError):
        Decoder(b"", max_count=100).decode_categorical(model, 101)


def test_lic_shape_above_max_pixels_refused_before_decoding():
    pytest.importorskip("torch")
    from semzip.models.lic import LICShape, load_lic

    lic = load_lic("tiny")
    img = np.full((16, 16, 3), 120, np.uint8)
    streams, shape = lic.compress(img)
    lic.max_pixels = 64 * 64
    assert lic.decompress(streams, shape).shape == (16, 16, 3)
    for hostile in (LICShape(65, 64, 16, 16, shape.model), LICShape(16, 16, 4096, 4096, shape.model),
                    LICShape(2**40, 2**40, 2**40, 2**40, shape.model)):
        with _peak() as pk, pytest.raises(ResourceLimitError, match="max_pixels"):
            lic.decompress(streams, hostile)
        assert pk.peak < PEAK


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_header_json_refused(depth):
    # was: RecursionError escaped from json.loads (not a SemzipError)
    nested = "[" * depth + "]" * depth
    pre = MAGIC + bytes([1, 0])
    head = ('{"codec":"sq","params":{"x":' + nested + '},"models":[],"n_items":0,"sections":' + nested + "}").encode()
    data = pre + _section_record(SectionType.HEADER, "header", head, pre)
    with pytest.raises(CorruptedSectionError):
        Container.from_bytes(data)


def test_repeated_section_refused():
    body = [(SectionType.BLOB, "model", b"first"), (SectionType.BLOB, "model", b"second")]
    _refused(_container({}, body), CorruptedSectionError)
