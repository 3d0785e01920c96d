"""Container format: round trips, random access, corruption detection, atomic writes."""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semzip import format as fmt
from semzip.errors import (
    CorruptedSectionError,
    InvalidInputError,
    ModelMismatchError,
    NotAContainerError,
    ResourceLimitError,
    SemzipError,
    UnsupportedVersionError,
)


def _sample(blocks=((2, b"ab"), (3, b"cde")), names=("a", "b", "c", "d", "e")) -> bytes:
    header = fmt.Header(codec="test", params={"k": 8}, models=[fmt.ModelRef("encoder", "m", "f00d")])
    return fmt.pack(header, {"dictionary": b"\x00\x01\x02" * 10}, list(blocks), list(names) if names else None)


def test_round_trip_header_blobs_blocks_names():
    c = fmt.Container.from_bytes(_sample())
    assert c.header.codec == "test" and c.header.params == {"k": 8} and c.header.n_items == 5
    assert c.header.model("encoder") == fmt.ModelRef("encoder", "m", "f00d")
    assert c.blobs() == {"dictionary": b"\x00\x01\x02" * 10}
    assert [c.block(i) for i in range(2)] == [b"ab", b"cde"]
    assert c.names == ["a", "b", "c", "d", "e"]
    assert [c.locate(i) for i in range(5)] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert c.item_index("d") == 3
    assert all(ok for _, ok, _ in c.verify())


def test_default_names_and_empty_archive():
    c = fmt.Container.from_bytes(_sample(names=None))
    assert c.names[:2] == ["item_00000", "item_00001"]
    empty = fmt.Container.from_bytes(fmt.pack(fmt.Header(codec="none")))
    assert empty.header.n_items == 0 and empty.blocks == []


def test_random_access_reads_only_its_block(tmp_path):
    path = tmp_path / "x.smz"
    fmt.write(path, fmt.Header(codec="t"), {}, [(1, b"A" * 100), (1, b"B" * 100)])
    data = bytearray(path.read_bytes())
    # corrupt block 0 only: block 1 must still decode, block 0 must be refused
    c0 = fmt.Container.from_bytes(bytes(data))
    start = c0.section("items").offset
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))
    with fmt.Container.open(path) as c:
        assert c.block(1) == b"B" * 100
        with pytest.raises(CorruptedSectionError, match="block 0"):
            c.block(0)
        assert not dict((r[0], r[1]) for r in c.verify())["blocks"]


def test_model_mismatch_is_refused():
    c = fmt.Container.from_bytes(_sample())
    c.header.require_model("encoder", "m", "f00d")
    with pytest.raises(ModelMismatchError, match="refusing"):
        c.header.require_model("encoder", "m", "beef")
    with pytest.raises(ModelMismatchError):
        c.header.require_model("generator", "g", "0")


def test_not_a_container_and_version():
    with pytest.raises(NotAContainerError):
        fmt.Container.from_bytes(b"PK\x03\x04 zip file")
    with pytest.raises(NotAContainerError):
        fmt.Container.from_bytes(b"")
    # a future major version with a valid CRC is refused as unsupported, not as corrupt
    header = fmt.Header(codec="t")
    data = bytearray(fmt.pack(header))
    data[4] = 9
    body_len = len(data) - 6 - 4
    crc = zlib.crc32(bytes(data[: 6 + body_len])) & 0xFFFFFFFF
    data[-4:] = crc.to_bytes(4, "little")
    with pytest.raises(UnsupportedVersionError, match=r"format 9\.\d"):
        fmt.Container.from_bytes(bytes(data))


def test_header_limit():
    data = fmt.pack(fmt.Header(codec="t", params={"big": "x" * 5000}))
    with pytest.raises(ResourceLimitError):
        fmt.Container.from_bytes(data, limits=fmt.Limits(max_header_bytes=1000))


def test_bad_names_and_reserved_blob():
    with pytest.raises(InvalidInputError):
        fmt.pack(fmt.Header(codec="t"), {}, [(1, b"x")], ["a\nb"])
    with pytest.raises(InvalidInputError):
        fmt.pack(fmt.Header(codec="t"), {}, [(1, b"x")], ["a", "b"])
    with pytest.raises(InvalidInputError):
        fmt.pack(fmt.Header(codec="t"), {"names": b""})


def test_atomic_write_keeps_previous_archive_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.smz"
    fmt.write(path, fmt.Header(codec="old"))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        fmt.write(path, fmt.Header(codec="new"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.smz"]  # no temp file left behind


def test_write_to_missing_folder_is_clear(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        fmt.write(tmp_path / "nope" / "x.smz", fmt.Header(codec="t"))


payloads = st.binary(max_size=64)
block_lists = st.lists(st.tuples(st.integers(1, 4), payloads), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blobs=st.dictionaries(st.text("abcdefgh", min_size=1, max_size=8), payloads, max_size=3), blocks=block_lists)
def test_any_payload_round_trips(blobs, blocks):
    data = fmt.pack(fmt.Header(codec="prop", params={"n": len(blobs)}), blobs, blocks)
    c = fmt.Container.from_bytes(data)
    assert c.blobs() == blobs
    assert [c.block(i) for i in range(len(blocks))] == [p for _, p in blocks]
    assert c.header.n_items == sum(n for n, _ in blocks)


def _read_everything(data: bytes) -> None:
    c = fmt.Container.from_bytes(data)
    c.blobs()
    for _ in c.iter_blocks():
        pass
    _ = c.names


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(min_value=0), bit=st.integers(0, 7), blocks=block_lists)
def test_any_flipped_bit_is_detected(pos, bit, blocks):
    data = bytearray(fmt.pack(fmt.Header(codec="prop"), {"d": b"payload"}, blocks))
    data[pos % len(data)] ^= 1 << bit
    with pytest.raises(SemzipError):
        _read_everything(bytes(data))


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0), blocks=block_lists)
def test_any_truncation_is_detected(cut, blocks):
    data = fmt.pack(fmt.Header(codec="prop"), {"d": b"payload"}, blocks)
    with pytest.raises(SemzipError):
        _read_everything(data[: cut % len(data)])


@settings(max_examples=100, deadline=None)
@given(extra=st.binary(min_size=1, max_size=16))
def test_trailing_garbage_is_detected(extra):
    with pytest.raises(CorruptedSectionError, match="unexpected bytes"):
        fmt.Container.from_bytes(_sample() + extra)
