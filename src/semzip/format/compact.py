"""The compact container: a few bytes around one short entropy-coded stream (a caption), or a list of them.

A caption codes to ~7 bytes, so the regular container (magic, JSON header, CRC32 per section) would
triple the file. Three layouts (docs/text-coding.md has the details):

    single, layout 3 (text codec 2, written since layout 3 came; 3 bytes around the payload):
             magic 0xF8-0xFB | payload | check u16 (big-endian)
             magic bit 0: the original text ended with a newline that is not part of the coded text;
             bit 1: the caption was coded with an adapter (refused before decoding without one, and
             without an adapter the other way round); no model tag: another model or adapter is
             found by the check after decoding
    single, layout 2 (text codec 2; 4 bytes around the payload):
             magic 0xF6 or 0xF7 | model tag u8 | payload | check u16 (big-endian)
             0xF7: the original text ended with a newline that is not part of the coded text
    single, layout 1:  magic 0xF5 | format u8 | model tag u8 | payload | check u16
    lines (layout 1):  magic 0xF5 | format u8 | model tag u8 | count uvarint | record*
             record = length uvarint | payload | check u16

    format   bits 7-5: layout version (1); bit 4: lines file; bit 3: the original text ended with a
             newline that is not part of the coded text(s); bits 2-0: codec id (what the payloads hold;
             1 = semzip.codecs.text v1, 2 = the integer-model codec)
    tag      first byte of the model fingerprint (an adapter is part of it): a wrong model is refused
             before decoding (255 of 256 wrong models; the check catches the rest)
    check    CRC-16/CCITT (binascii.crc_hqx, init 0xFFFF) over: the full model fingerprint bytes, the
             header bytes (incl. count), for lines the record index as uvarint, the record's own bytes
             before the check, and ``check_data`` (the decoded symbols: the caption's UTF-8). It is
             verified after decoding, so it also catches a decoder that desynchronised (a different
             model, or float arithmetic that differs on another machine) -- at 16 bits, a damaged or
             desynchronised record passes with probability 2**-16.

Layout 2 drops the format byte for the common case (one caption, codec 2): its first byte says all the
format byte said (single, codec 2, the newline flag). Layout 3 also drops the model tag, whose job the
check already does after decoding (the check covers the full fingerprint), and keeps in the magic byte
the one model fact users get wrong most (adapter or not). Codec-1 files and lines files keep layout 1;
files of every layout still decode. 0xF5-0xFB never occur in UTF-8 text and differ from the main
container's first byte (0x89), so a caption file is never mistaken for either. stdlib only; writes go
through :func:`semzip.format.atomic_write`.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from semzip.errors import (
    CorruptedSectionError,
    InvalidInputError,
    ModelMismatchError,
    NotAContainerError,
    UnsupportedVersionError,
)
from semzip.format.varint import decode_uvarint, encode_uvarint

__all__ = [
    "COMPACT_MAGIC",
    "COMPACT_VERSION",
    "OVERHEAD_SINGLE",
    "CompactHeader",
    "CompactRecord",
    "crc16",
    "is_compact",
    "pack",
    "pack_lines",
    "read_header",
    "unpack",
    "unpack_lines",
]

COMPACT_MAGIC = 0xF5
COMPACT_VERSION = 1
SINGLE2_MAGIC = 0xF6  # layout 2 single record of codec 2; 0xF7 with the final-newline flag
SINGLE2_CODEC = 2
SINGLE3_MAGIC = 0xF8  # layout 3 single record of codec 2; | 1 final newline, | 2 coded with an adapter
_SINGLE3 = range(SINGLE3_MAGIC, SINGLE3_MAGIC + 4)
_FLAG_LINES, _FLAG_NEWLINE = 0x10, 0x08
HEADER_SIZE = 3
HEADER_SIZE_SINGLE2 = 2
HEADER_SIZE_SINGLE3 = 1
CHECK_SIZE = 2
OVERHEAD_SINGLE = HEADER_SIZE_SINGLE3 + CHECK_SIZE  # what a single caption file of codec 2 costs
OVERHEAD_SINGLE_V2 = HEADER_SIZE_SINGLE2 + CHECK_SIZE
OVERHEAD_SINGLE_V1 = HEADER_SIZE + CHECK_SIZE
MAX_CODEC = 7


def fingerprint_bytes(fingerprint: str) -> bytes:
    """The bytes a fingerprint string stands for: hex decoded, else the sha256 of its UTF-8."""
    if not isinstance(fingerprint, str) or not fingerprint:
        raise InvalidInputError(f"model fingerprint must be a non-empty string, got {fingerprint!r}")
    try:
        return bytes.fromhex(fingerprint)
    except ValueError:
        return hashlib.sha256(fingerprint.encode("utf-8")).digest()


def crc16(*parts: bytes) -> int:
    crc = 0xFFFF
    for part in parts:
        crc = binascii.crc_hqx(part, crc)
    return crc


@dataclass(frozen=True)
class CompactHeader:
    """The parsed fixed header: codec id, kind, model tag and (lines only) the record count."""

    codec: int
    lines: bool  # a list of records (``--lines``)
    final_newline: bool  # the original text file ended with a newline (not part of the coded text)
    model_tag: int | None  # None in layout 3 (no tag)
    count: int | None
    size: int  # header bytes, count included
    adapted: bool | None = None  # layout 3: coded with an adapter; None where the layout does not say


@dataclass(frozen=True)
class CompactRecord:
    """One stored stream; call :meth:`verify` with the decoded symbols before trusting them."""

    payload: bytes
    check: int
    _prefix: tuple[bytes, ...]

    def verify(self, check_data: bytes) -> None:
        """Raise CorruptedSectionError unless the stored check matches ``check_data``."""
        if crc16(*self._prefix, self.payload, check_data) != self.check:
            raise CorruptedSectionError(
                "caption check failed after decoding: the file is corrupt, or it was encoded with a "
                "different model, adapter or codec, or this machine computes the model's probabilities differently"
            )


def _head(codec: int, lines: bool, final_newline: bool, fingerprint: str) -> tuple[bytes, bytes]:
    if isinstance(codec, bool) or not isinstance(codec, int) or not 1 <= codec <= MAX_CODEC:
        raise InvalidInputError(f"codec id must be in [1, {MAX_CODEC}], got {codec!r}")
    fmt = (COMPACT_VERSION << 5) | (_FLAG_LINES if lines else 0) | (_FLAG_NEWLINE if final_newline else 0) | codec
    fp = fingerprint_bytes(fingerprint)
    return bytes((COMPACT_MAGIC, fmt, fp[0])), fp


def pack(payload: bytes, *, codec: int, fingerprint: str, check_data: bytes, final_newline: bool = False,
         layout: int | None = None, adapted: bool = False) -> bytes:
    """One record: header (1 byte in layout 3, the default for codec 2; 2 in layout 2; 3 in layout 1),
    ``payload``, 2-byte check over fingerprint, header, payload, check_data. ``adapted`` (layout 3): the
    coder's model holds an adapter."""
    layout = layout if layout is not None else (3 if codec == SINGLE2_CODEC else 1)
    if layout == 3:
        if codec != SINGLE2_CODEC:
            raise InvalidInputError(f"layout 3 holds codec {SINGLE2_CODEC} only, not codec {codec}")
        fp = fingerprint_bytes(fingerprint)
        head = bytes((SINGLE3_MAGIC | int(bool(final_newline)) | (2 if adapted else 0),))
    elif layout == 2:
        if codec != SINGLE2_CODEC:
            raise InvalidInputError(f"layout 2 holds codec {SINGLE2_CODEC} only, not codec {codec}")
        fp = fingerprint_bytes(fingerprint)
        head = bytes((SINGLE2_MAGIC | int(bool(final_newline)), fp[0]))
    elif layout == 1:
        head, fp = _head(codec, False, final_newline, fingerprint)
    else:
        raise InvalidInputError(f"compact layout must be 1, 2 or 3, got {layout!r}")
    payload = bytes(payload)
    return head + payload + crc16(fp, head, payload, bytes(check_data)).to_bytes(2, "big")


def pack_lines(
    payloads: Sequence[bytes], *, codec: int, fingerprint: str, check_data: Sequence[bytes],
    final_newline: bool = False,
) -> bytes:
    """Several records (one per caption line) after one header that holds their count."""
    if len(payloads) != len(check_data):
        raise InvalidInputError("pack_lines needs one check_data entry per payload")
    head, fp = _head(codec, True, final_newline, fingerprint)
    head += encode_uvarint(len(payloads))
    out = [head]
    for i, (payload, data) in enumerate(zip(payloads, check_data, strict=True)):
        rec = encode_uvarint(len(payload)) + bytes(payload)
        out += [rec, crc16(fp, head, encode_uvarint(i), rec, bytes(data)).to_bytes(2, "big")]
    return b"".join(out)


def is_compact(data: bytes) -> bool:
    """True if ``data`` starts like a compact file (magic byte of any layout)."""
    return len(data) >= 1 and (data[0] in (COMPACT_MAGIC, SINGLE2_MAGIC, SINGLE2_MAGIC | 1) or data[0] in _SINGLE3)


def read_header(data: bytes) -> CompactHeader:
    """Parse the header; refuses other files, unknown versions and malformed headers."""
    data = bytes(data)
    if not is_compact(data):
        raise NotAContainerError("not a semzip caption file (the first byte is not one of 0xF5-0xFB)")
    if data[0] in _SINGLE3:  # layout 3: one record of codec 2, no tag
        return CompactHeader(codec=SINGLE2_CODEC, lines=False, final_newline=bool(data[0] & 1), model_tag=None,
                             count=None, size=HEADER_SIZE_SINGLE3, adapted=bool(data[0] & 2))
    if data[0] != COMPACT_MAGIC:  # layout 2: one record of codec 2
        if len(data) < HEADER_SIZE_SINGLE2:
            raise CorruptedSectionError("caption file is truncated inside its 2-byte header")
        return CompactHeader(codec=SINGLE2_CODEC, lines=False, final_newline=bool(data[0] & 1), model_tag=data[1],
                             count=None, size=HEADER_SIZE_SINGLE2)
    if len(data) < HEADER_SIZE:
        raise CorruptedSectionError("caption file is truncated inside its 3-byte header")
    fmt = data[1]
    version, codec = fmt >> 5, fmt & 7
    if version != COMPACT_VERSION:
        raise UnsupportedVersionError(
            f"caption file has layout version {version}; this semzip reads version {COMPACT_VERSION}: "
            "upgrade semzip (or the file is corrupt)"
        )
    if codec == 0:
        raise CorruptedSectionError(f"caption file header is malformed (format byte 0x{fmt:02x})")
    count, size = None, HEADER_SIZE
    lines = bool(fmt & _FLAG_LINES)
    if lines:
        count, size = decode_uvarint(data, HEADER_SIZE, "record count")
        if count > (len(data) - size) // (1 + CHECK_SIZE):
            raise CorruptedSectionError(f"caption file claims {count} records but is too short for them")
    return CompactHeader(codec=codec, lines=lines, final_newline=bool(fmt & _FLAG_NEWLINE), model_tag=data[2],
                         count=count, size=size)


def _check_model(header: CompactHeader, fp: bytes, fingerprint: str, adapted: bool | None = None) -> None:
    if header.adapted is not None and adapted is not None and header.adapted != adapted:
        if header.adapted:
            raise ModelMismatchError("caption file was coded with an adapter: decode it with the --adapter it "
                                     "was made with")
        raise ModelMismatchError("caption file was coded without an adapter: decode it without --adapter")
    if header.model_tag is not None and header.model_tag != fp[0]:
        raise ModelMismatchError(
            f"caption file was encoded with another model or adapter (tag {header.model_tag:02x}, the loaded "
            f"model {fingerprint} has tag {fp[0]:02x}): decode it with the model (and --adapter) it was made with"
        )


def unpack(data: bytes, *, fingerprint: str, codec: int | None = None,
           adapted: bool | None = None) -> tuple[CompactHeader, CompactRecord]:
    """Parse a single-record file for the model ``fingerprint`` (``adapted``: whether that model holds an
    adapter; None skips the layout-3 adapter flag); the caller decodes then verifies."""
    data = bytes(data)
    header = read_header(data)
    if header.lines:
        raise InvalidInputError("this caption file holds several lines: decode it as a lines file")
    if codec is not None and header.codec != codec:
        raise UnsupportedVersionError(f"caption file uses codec {header.codec}, expected codec {codec}")
    if len(data) < header.size + CHECK_SIZE:
        raise CorruptedSectionError("caption file is truncated (shorter than header + check)")
    fp = fingerprint_bytes(fingerprint)
    _check_model(header, fp, fingerprint, adapted)
    check = int.from_bytes(data[-CHECK_SIZE:], "big")
    return header, CompactRecord(payload=data[header.size:-CHECK_SIZE], check=check,
                                 _prefix=(fp, data[:header.size]))


def unpack_lines(data: bytes, *, fingerprint: str, codec: int | None = None) -> tuple[CompactHeader, list[CompactRecord]]:
    """Parse a lines file: its header and one record per line (each to decode, then verify)."""
    data = bytes(data)
    header = read_header(data)
    if not header.lines:
        raise InvalidInputError("this caption file holds a single caption, not lines")
    if codec is not None and header.codec != codec:
        raise UnsupportedVersionError(f"caption file uses codec {header.codec}, expected codec {codec}")
    fp = fingerprint_bytes(fingerprint)
    _check_model(header, fp, fingerprint)
    head = data[: header.size]
    pos, records = header.size, []
    for i in range(header.count or 0):
        n, body = decode_uvarint(data, pos, "record length")
        end = body + n + CHECK_SIZE
        if end > len(data):
            raise CorruptedSectionError(f"caption file is truncated inside record {i}")
        rec = data[pos : body + n]
        check = int.from_bytes(data[body + n : end], "big")
        records.append(CompactRecord(payload=data[body : body + n], check=check,
                                     _prefix=(fp, head, encode_uvarint(i), rec[: body - pos])))
        pos = end
    if pos != len(data):
        raise CorruptedSectionError(f"caption file has {len(data) - pos} unexpected bytes after its records")
    return header, records
