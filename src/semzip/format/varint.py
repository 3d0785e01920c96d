"""Unsigned LEB128 varints: the length fields of the container (small numbers cost one byte)."""

from __future__ import annotations

from semzip.errors import CorruptedSectionError

MAX_VARINT_BYTES = 10  # enough for any value below 2**64


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer as unsigned LEB128."""
    if value < 0:
        raise ValueError(f"uvarint must be non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(buf: bytes | memoryview, pos: int, what: str = "length") -> tuple[int, int]:
    """Decode one uvarint at ``pos``; return (value, new position). Refuses overlong or cut-off varints."""
    value = 0
    shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise CorruptedSectionError(f"file is truncated inside a {what} field")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if i > 0 and byte == 0:
                raise CorruptedSectionError(f"malformed {what} field (overlong varint)")
            return value, pos + i + 1
        shift += 7
    raise CorruptedSectionError(f"malformed {what} field (varint longer than {MAX_VARINT_BYTES} bytes)")
