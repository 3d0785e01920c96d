"""The semzip container: the one place that reads or writes archive bytes.

Byte layout (all integers little-endian; ``uvarint`` = unsigned LEB128), documented in docs/format.md:

    preamble   magic b"\\x89SMZ" | major u8 | minor u8
    section*   type u8 | name_len u8 | name ascii | length uvarint | payload | crc32 u32

The first section is the HEADER (UTF-8 JSON); its CRC also covers the preamble, and it lists every section
that follows, so a missing, extra or reordered section is detected. Item payloads live in blocks inside one
ITEMS section; the INDEX section gives each block's item count, byte length and CRC32, so one item decodes
after reading only the header, the index and its own block. Only numpy-free stdlib code lives here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO

from semzip.errors import (
    CorruptedSectionError,
    InvalidInputError,
    ModelMismatchError,
    NotAContainerError,
    ResourceLimitError,
    UnsupportedVersionError,
)
from semzip.format.names import MAX_NAME_BYTES, DuplicateTracker, first_duplicate, name_problem
from semzip.format.varint import decode_uvarint, encode_uvarint

MAGIC = b"\x89SMZ"
FORMAT_MAJOR = 1
FORMAT_MINOR = 1  # 1.1: image-text headers must state caption_codec and caption_check (docs/format.md)
WRITABLE_VERSIONS = ((1, 0), (1, 1))  # versions whose every field this semzip knows, and may write
PREAMBLE_SIZE = len(MAGIC) + 2
CRC_SIZE = 4
NAMES_SECTION = "names"


class SectionType(IntEnum):
    """What a section holds; the reader refuses types it does not know."""

    HEADER = 1  # UTF-8 JSON: codec, parameters, models, section list
    BLOB = 2  # opaque codec payload (dictionary, statistics, ...)
    INDEX = 3  # per-block item count, byte length, CRC32
    ITEMS = 4  # concatenated item blocks


@dataclass(frozen=True)
class Limits:
    """Safety limits applied before anything is allocated (decompression-bomb guard).

    ``max_values`` bounds what one decode may produce (items x dimensions); the codecs check it before
    decoding. Override per call (``Container.open(path, limits=Limits(...))``) or for a whole process with
    the ``SEMZIP_LIMITS`` environment variable, e.g. ``SEMZIP_LIMITS="max_items=1000000,max_values=2e9"``.
    """

    max_header_bytes: int = 16 << 20
    max_sections: int = 4096
    max_blocks: int = 1 << 24
    max_items: int = 1 << 32
    max_names_bytes: int = 1 << 28
    max_values: int = 1 << 30

    @classmethod
    def from_env(cls, spec: str | None = None) -> Limits:
        """Limits from ``SEMZIP_LIMITS`` (comma-separated ``name=value``; unset names keep their default)."""
        spec = os.environ.get(LIMITS_ENV, "") if spec is None else spec
        values: dict[str, int] = {}
        for part in filter(None, (x.strip() for x in spec.split(","))):
            key, _, raw = part.partition("=")
            key = key.strip()
            if key not in cls.__dataclass_fields__:
                raise InvalidInputError(
                    f"{LIMITS_ENV}: unknown limit {key!r}; known: {', '.join(cls.__dataclass_fields__)}"
                )
            try:
                value = int(float(raw)) if any(c in raw for c in ".eE") else int(raw)
            except (ValueError, OverflowError):
                raise InvalidInputError(f"{LIMITS_ENV}: {key} must be a number, got {raw!r}") from None
            if value < 0:
                raise InvalidInputError(f"{LIMITS_ENV}: {key} must not be negative, got {value}")
            values[key] = value
        return cls(**values)


LIMITS_ENV = "SEMZIP_LIMITS"
DEFAULT_LIMITS = Limits()


def default_limits() -> Limits:
    """The limits a reader uses when none are passed: ``SEMZIP_LIMITS`` if set, else :data:`DEFAULT_LIMITS`."""
    return Limits.from_env() if os.environ.get(LIMITS_ENV) else DEFAULT_LIMITS


@dataclass(frozen=True)
class ModelRef:
    """A model a stream needs: its role (encoder, generator, ...), registry name and weight fingerprint."""

    role: str
    name: str
    fingerprint: str

    def to_json(self) -> dict:
        return {"role": self.role, "name": self.name, "fingerprint": self.fingerprint}


@dataclass
class Header:
    """Archive-level metadata, stored once: which codec, with which parameters, needing which models."""

    codec: str
    params: dict = field(default_factory=dict)
    models: list[ModelRef] = field(default_factory=list)
    n_items: int = 0
    writer: str = ""
    # the container format version this header was read with (None: not read from a file)
    version: tuple[int, int] | None = field(default=None, compare=False)

    def model(self, role: str) -> ModelRef | None:
        """The model recorded for ``role``, or None."""
        return next((m for m in self.models if m.role == role), None)

    def require_model(self, role: str, name: str, fingerprint: str) -> None:
        """Refuse to decode with a model other than the one the stream was encoded with."""
        ref = self.model(role)
        if ref is None:
            raise ModelMismatchError(f"the archive records no {role} model; it cannot be decoded with {name!r}")
        if ref.name != name or ref.fingerprint != fingerprint:
            raise ModelMismatchError(
                f"the archive was encoded with {role} {ref.name!r} (fingerprint {ref.fingerprint}); "
                f"refusing to decode with {name!r} (fingerprint {fingerprint}). Load the model it names."
            )


@dataclass(frozen=True)
class SectionInfo:
    """Where a section lies in the file, as found by the reader (payload offset and length)."""

    type: SectionType
    name: str
    offset: int
    length: int
    record_size: int  # bytes of the whole record: type, name, length field, payload and CRC


@dataclass(frozen=True)
class BlockInfo:
    """One entry of the item index."""

    n_items: int
    offset: int  # byte offset of the block inside the ITEMS payload
    length: int
    crc: int
    first_item: int


# --------------------------------------------------------------------------------------------- writing


def _section_record(stype: SectionType, name: str, payload: bytes, crc_prefix: bytes = b"") -> bytes:
    raw_name = name.encode("ascii")
    if len(raw_name) > 255 or not all(0x20 <= b < 0x7F for b in raw_name):
        raise InvalidInputError(f"section names are printable ASCII of at most 255 bytes: {name!r}")
    body = bytes([int(stype), len(raw_name)]) + raw_name + encode_uvarint(len(payload)) + payload
    crc = zlib.crc32(crc_prefix + body) & 0xFFFFFFFF
    return body + crc.to_bytes(4, "little")


def _pack_index(blocks: Sequence[tuple[int, bytes]]) -> bytes:
    out = bytearray(encode_uvarint(len(blocks)))
    for n_items, payload in blocks:
        out += encode_uvarint(n_items) + encode_uvarint(len(payload))
        out += (zlib.crc32(payload) & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(out)


def _check_name(n: str) -> None:
    problem = name_problem(n)
    if problem:
        raise InvalidInputError(f"item name {_show(n)}: {problem}")


def _show(name: object) -> str:
    """A name for a message: repr (control characters escaped), cut to 80 characters."""
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _pack_names(names: Sequence[str]) -> bytes:
    for n in names:
        _check_name(n)
    dup = first_duplicate(names)
    if dup is not None:
        raise InvalidInputError(f"two items are called {_show(dup)}: item names must be distinct")
    return zlib.compress("\n".join(names).encode("utf-8"), 9)


class NamesPacker:
    """Builds the item-names section incrementally (same bytes as passing all names to ``pack``).

    For collections too large to hold every name as a Python string: feed names shard by shard, then pass
    the packer as ``pack(..., names=packer)``.
    """

    def __init__(self) -> None:
        self._z = zlib.compressobj(9)
        self._parts: list[bytes] = []
        self.count = 0
        self._blob: bytes | None = None
        self._seen = DuplicateTracker()

    def add(self, names: Sequence[str]) -> None:
        if self._blob is not None:
            raise InvalidInputError("names were already packed")
        for n in names:
            _check_name(n)
            if not self._seen.add(n):
                raise InvalidInputError(f"two items are called {_show(n)}: item names must be distinct")
        if not names:
            return
        text = ("\n" if self.count else "") + "\n".join(names)
        self._parts.append(self._z.compress(text.encode("utf-8")))
        self.count += len(names)

    def blob(self) -> bytes:
        if self._blob is None:
            self._blob = b"".join(self._parts) + self._z.flush()
            self._parts = []
        return self._blob

    def __len__(self) -> int:
        return self.count


def pack(
    header: Header,
    blobs: dict[str, bytes] | None = None,
    blocks: Sequence[tuple[int, bytes]] = (),
    names: Sequence[str] | None = None,
    version: tuple[int, int] | None = None,
) -> bytes:
    """Serialise a whole container. ``blocks`` are (n_items, payload) pairs; ``names`` one per item;
    ``version`` (default: the current one) one of :data:`WRITABLE_VERSIONS`."""
    version = tuple(version or (FORMAT_MAJOR, FORMAT_MINOR))
    if version not in WRITABLE_VERSIONS:
        raise InvalidInputError(f"this semzip writes container formats {_versions()}, not {version[0]}.{version[1]}")
    blobs = dict(blobs or {})
    if NAMES_SECTION in blobs:
        raise InvalidInputError(f"blob name {NAMES_SECTION!r} is reserved for item names")
    n_items = sum(n for n, _ in blocks)
    if names is not None:
        if len(names) != n_items:
            raise InvalidInputError(f"{len(names)} names given for {n_items} items")
        blobs[NAMES_SECTION] = names.blob() if isinstance(names, NamesPacker) else _pack_names(names)
    header.n_items = n_items
    body: list[tuple[SectionType, str, bytes]] = [(SectionType.BLOB, k, bytes(v)) for k, v in blobs.items()]
    if blocks:
        body.append((SectionType.INDEX, "index", _pack_index(blocks)))
        body.append((SectionType.ITEMS, "items", b"".join(p for _, p in blocks)))
    meta = {
        "codec": header.codec,
        "params": header.params,
        "models": [m.to_json() for m in header.models],
        "n_items": n_items,
        "writer": header.writer,
        "sections": [[int(t), name] for t, name, _ in body],
    }
    head = json.dumps(meta, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
    preamble = MAGIC + bytes(version)
    parts = [preamble, _section_record(SectionType.HEADER, "header", head, crc_prefix=preamble)]
    parts += [_section_record(t, name, payload) for t, name, payload in body]
    return b"".join(parts)


def _versions() -> str:
    return ", ".join(f"{a}.{b}" for a, b in WRITABLE_VERSIONS)


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file or folder made beside ``name``: short enough that a target whose own name
    fits the 255-byte limit never fails because of its temporary name."""
    return "." + name.encode("utf-8")[:200].decode("utf-8", "ignore") + "."


def _naming(exc: OSError, target: Path) -> OSError:
    """``exc`` as an OSError that names ``target`` (not the temporary file the failure happened on)."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))


def new_file_mode(mode: int = 0o666) -> int:
    """``mode`` less the process umask: what ``open()`` (0o666) or ``mkdir()`` (0o777) gives a new file or
    folder. Temporary files and folders (``mkstemp``, ``mkdtemp``) are made private (0600, 0700); an output
    renamed into place from one gets this mode instead."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def as_new_output(path: str | os.PathLike, folder: bool = False) -> None:
    """Give a temporary file (or ``folder``) the permissions a newly created one would have (umask applied)."""
    os.chmod(path, new_file_mode(0o777 if folder else 0o666))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A file handle on a temporary file beside ``path``; when the block succeeds the file is fsynced and
    renamed over ``path``. On any failure the temporary file is removed and an OSError names ``path``."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InvalidInputError(f"output folder does not exist: {directory}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _naming(exc, target) from None
    try:
        as_new_output(tmp)  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _naming(exc, target) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes) -> int:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    with atomic_file(path) as fh:
        fh.write(data)
    return len(data)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; when the block succeeds its files are fsynced and it is
    renamed to ``path`` (if another process created ``path`` first, theirs is kept). Always cleaned up."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    try:
        as_new_output(tmp, folder=True)  # mkdtemp makes 0700 folders
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # another process filled the cache first: keep theirs
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write(path: str | os.PathLike, header: Header, blobs=None, blocks=(), names=None) -> int:
    """Pack and atomically write a container; returns the number of bytes written."""
    return atomic_write(path, pack(header, blobs, blocks, names))


# --------------------------------------------------------------------------------------------- reading


class DefaultNames(Sequence[str]):
    """``item_00000, item_00001, ...`` for an archive without stored names, made on demand.

    A hostile header may declare billions of items; listing their default names up front would exhaust
    memory before any check could refuse the archive.
    """

    generated = True  # distinct and file-name safe by construction (semzip.format.names.output_files)

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("item number out of range")
        return f"item_{i:05d}"

    def index(self, name: str, *args) -> int:  # type: ignore[override]
        head, _, digits = str(name).partition("item_")
        if not head and digits.isdigit() and (len(digits) == 5 or not digits.startswith("0")):
            i = int(digits)
            if i < self._n and self[i] == name:
                return i
        raise ValueError(f"{name!r} is not in the item names")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DefaultNames):
            return other._n == self._n
        if isinstance(other, (list, tuple)):
            return len(other) == self._n and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"DefaultNames({self._n})"


class Container:
    """A parsed container over bytes or an open file; sections are read (and CRC-checked) on demand."""

    def __init__(self, source: bytes | BinaryIO, size: int, limits: Limits | None = None, label: str = "input"):
        self._src = source
        self._size = size
        self.limits = default_limits() if limits is None else limits
        self.label = label
        self._blocks: list[BlockInfo] | None = None
        self._names: Sequence[str] | None = None
        self._parse()

    # -- construction
    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits | None = None) -> Container:
        """Parse a container held in memory."""
        return cls(bytes(data), len(data), limits, label="buffer")

    @classmethod
    def open(cls, path: str | os.PathLike, limits: Limits | None = None) -> Container:
        """Open a container file; only the header and section boundaries are read now."""
        p = Path(path)
        if not p.is_file():
            raise InvalidInputError(f"no such archive: {p}")
        fh = open(p, "rb")
        try:
            return cls(fh, p.stat().st_size, limits, label=str(p))
        except BaseException:
            fh.close()
            raise

    def close(self) -> None:
        if not isinstance(self._src, bytes):
            self._src.close()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level
    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self._size:
            raise CorruptedSectionError(f"{self.label}: file is truncated (needs byte {offset + n}, has {self._size})")
        if isinstance(self._src, bytes):
            return self._src[offset : offset + n]
        self._src.seek(offset)
        data = self._src.read(n)
        if len(data) != n:
            raise CorruptedSectionError(f"{self.label}: file is truncated")
        return data

    def _record_head(self, pos: int) -> tuple[SectionType, str, int, int]:
        """Parse type, name and length at ``pos``; return (type, name, payload offset, payload length)."""
        head = self._read(pos, min(2 + 255 + 10, self._size - pos))
        if len(head) < 3:
            raise CorruptedSectionError(f"{self.label}: file is truncated inside a section header")
        try:
            stype = SectionType(head[0])
        except ValueError:
            raise CorruptedSectionError(f"{self.label}: unknown section type {head[0]} at byte {pos}") from None
        name_len = head[1]
        raw_name = head[2 : 2 + name_len]
        if len(raw_name) != name_len:
            raise CorruptedSectionError(f"{self.label}: file is truncated inside a section name")
        if not all(0x20 <= b < 0x7F for b in raw_name):
            raise CorruptedSectionError(f"{self.label}: section name at byte {pos} is not printable ASCII")
        name = raw_name.decode("ascii")
        length, p = decode_uvarint(head, 2 + name_len, what="section length")
        start = pos + p
        if start + length + CRC_SIZE > self._size:
            raise CorruptedSectionError(
                f"{self.label}: section {name!r} declares {length} bytes but the file ends first (truncated?)"
            )
        return stype, name, start, length

    def _check_crc(self, info: SectionInfo, payload: bytes, prefix: bytes = b"") -> None:
        head_start = info.offset - (info.record_size - info.length - CRC_SIZE)
        head = self._read(head_start, info.offset - head_start)
        stored = int.from_bytes(self._read(info.offset + info.length, CRC_SIZE), "little")
        if zlib.crc32(prefix + head + payload) & 0xFFFFFFFF != stored:
            raise CorruptedSectionError(f"{self.label}: section {info.name!r} is corrupted (CRC32 mismatch)")

    def _parse(self) -> None:
        pre = self._read(0, min(PREAMBLE_SIZE, self._size))
        if len(pre) < len(MAGIC) or pre[: len(MAGIC)] != MAGIC:
            raise NotAContainerError(f"{self.label} is not a semzip archive (magic bytes missing)")
        if len(pre) < PREAMBLE_SIZE:
            raise CorruptedSectionError(f"{self.label}: file is truncated inside the preamble")
        self.format_version: tuple[int, int] = (pre[4], pre[5])
        # the header CRC covers the preamble: check it before trusting the version byte
        stype, name, start, length = self._record_head(PREAMBLE_SIZE)
        if length > self.limits.max_header_bytes:
            raise ResourceLimitError(f"{self.label}: header of {length} bytes exceeds the limit")
        info = SectionInfo(stype, name, start, length, start - PREAMBLE_SIZE + length + CRC_SIZE)
        payload = self._read(start, length)
        self._check_crc(info, payload, prefix=pre)
        if pre[4] != FORMAT_MAJOR:
            raise UnsupportedVersionError(
                f"{self.label} uses container format {pre[4]}.{pre[5]}; this semzip reads {FORMAT_MAJOR}.x. "
                "Upgrade semzip to read it."
            )
        if stype != SectionType.HEADER:
            raise CorruptedSectionError(f"{self.label}: first section is not the header")
        meta = self._parse_header_json(payload)
        self.header.version = self.format_version
        listed = meta["sections"]
        if len(listed) > self.limits.max_sections:
            raise ResourceLimitError(f"{self.label}: {len(listed)} sections exceed the limit")
        self.sections: list[SectionInfo] = []
        pos = start + length + CRC_SIZE
        if len({name for _, name in listed}) != len(listed):
            raise CorruptedSectionError(f"{self.label}: the header lists a section name twice")
        for want_type, want_name in listed:
            stype, name, s, n = self._record_head(pos)
            if (int(stype), name) != (want_type, want_name):
                raise CorruptedSectionError(f"{self.label}: section {name!r} found where {want_name!r} was expected")
            self.sections.append(SectionInfo(stype, name, s, n, s - pos + n + CRC_SIZE))
            pos = s + n + CRC_SIZE
        if pos != self._size:
            raise CorruptedSectionError(f"{self.label}: {self._size - pos} unexpected bytes after the last section")
        self.header_size = PREAMBLE_SIZE + info.record_size

    def _parse_header_json(self, payload: bytes) -> dict:
        def typed(value, kind: type, what: str):
            # JSON types as written: a string is not a number, a number not a string, a bool not an int
            if type(value) is not kind:
                raise TypeError(f"{what} must be {kind.__name__}, got {type(value).__name__}")
            return value

        try:
            meta = json.loads(payload.decode("utf-8"))
            typed(meta, dict, "the header")
            models = [typed(m, dict, "a model") for m in typed(meta["models"], list, "models")]
            self.header = Header(
                codec=typed(meta["codec"], str, "codec"),
                params=typed(meta["params"], dict, "params"),
                models=[ModelRef(typed(m["role"], str, "a model role"), typed(m["name"], str, "a model name"),
                                 typed(m["fingerprint"], str, "a model fingerprint")) for m in models],
                n_items=typed(meta["n_items"], int, "n_items"),
                writer=typed(meta.get("writer", ""), str, "writer"),
            )
            sections = [(typed(t, int, "a section type"), typed(n, str, "a section name"))
                        for t, n in typed(meta["sections"], list, "sections")]
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:  # int(inf): Overflow
            raise CorruptedSectionError(f"{self.label}: header is malformed ({exc})") from None
        except RecursionError:  # JSON nested thousands deep
            raise CorruptedSectionError(f"{self.label}: header is malformed (JSON nested too deeply)") from None
        if not 0 <= self.header.n_items <= self.limits.max_items:
            raise ResourceLimitError(f"{self.label}: header declares {self.header.n_items} items")
        meta["sections"] = sections
        return meta

    # -- public
    @property
    def size(self) -> int:
        """Total bytes of the container."""
        return self._size

    def section(self, name: str) -> SectionInfo:
        for s in self.sections:
            if s.name == name:
                return s
        raise CorruptedSectionError(f"{self.label}: the archive has no section {name!r}")

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.sections)

    def read(self, name: str) -> bytes:
        """Read one section's payload and check its CRC32."""
        info = self.section(name)
        payload = self._read(info.offset, info.length)
        self._check_crc(info, payload)
        return payload

    def blobs(self) -> dict[str, bytes]:
        """All BLOB sections except the item names, CRC-checked."""
        return {s.name: self.read(s.name) for s in self.sections if s.type == SectionType.BLOB and s.name != NAMES_SECTION}

    @property
    def blocks(self) -> list[BlockInfo]:
        """The item index (read and checked on first use)."""
        if self._blocks is None:
            self._blocks = self._parse_index()
        return self._blocks

    def _parse_index(self) -> list[BlockInfo]:
        if not self.has("index"):
            if self.header.n_items:
                raise CorruptedSectionError(f"{self.label}: items declared but no index section")
            return []
        buf = self.read("index")
        n_blocks, p = decode_uvarint(buf, 0, "block count")
        if n_blocks > self.limits.max_blocks or n_blocks > len(buf):
            raise CorruptedSectionError(f"{self.label}: index declares an impossible {n_blocks} blocks")
        out, offset, first = [], 0, 0
        for _ in range(n_blocks):
            n_items, p = decode_uvarint(buf, p, "block item count")
            length, p = decode_uvarint(buf, p, "block length")
            if p + 4 > len(buf):
                raise CorruptedSectionError(f"{self.label}: index is truncated")
            crc = int.from_bytes(buf[p : p + 4], "little")
            p += 4
            out.append(BlockInfo(n_items, offset, length, crc, first))
            offset += length
            first += n_items
        items = self.section("items")
        if p != len(buf) or offset != items.length or first != self.header.n_items:
            raise CorruptedSectionError(f"{self.label}: index does not match the items section")
        return out

    def block(self, i: int) -> bytes:
        """Read block ``i`` and check its own CRC32 (without reading the other blocks)."""
        b = self.blocks[i]
        items = self.section("items")
        payload = self._read(items.offset + b.offset, b.length)
        if zlib.crc32(payload) & 0xFFFFFFFF != b.crc:
            raise CorruptedSectionError(f"{self.label}: item block {i} is corrupted (CRC32 mismatch)")
        return payload

    def iter_blocks(self) -> Iterator[tuple[BlockInfo, bytes]]:
        """All blocks in order; reads the whole ITEMS section once and checks its CRC and every block's."""
        if not self.blocks:
            return
        items = self.read("items")
        for i, b in enumerate(self.blocks):
            payload = items[b.offset : b.offset + b.length]
            if zlib.crc32(payload) & 0xFFFFFFFF != b.crc:
                raise CorruptedSectionError(f"{self.label}: item block {i} is corrupted (CRC32 mismatch)")
            yield b, payload

    def locate(self, item: int) -> tuple[int, int]:
        """(block number, position inside the block) of item number ``item``."""
        if not 0 <= item < self.header.n_items:
            raise InvalidInputError(f"item {item} out of range: the archive holds {self.header.n_items} items")
        lo, hi = 0, len(self.blocks) - 1
        while lo < hi:  # last block whose first_item <= item
            mid = (lo + hi + 1) // 2
            if self.blocks[mid].first_item <= item:
                lo = mid
            else:
                hi = mid - 1
        return lo, item - self.blocks[lo].first_item

    @property
    def names(self) -> Sequence[str]:
        """Item names (item_00000, ... when the archive stores none, generated on demand)."""
        if self._names is None:
            if self.has(NAMES_SECTION):
                try:
                    text = self._inflate_names(self.read(NAMES_SECTION)).decode("utf-8")
                except (zlib.error, UnicodeDecodeError):
                    raise CorruptedSectionError(f"{self.label}: item names are corrupted") from None
                names = text.split("\n") if text else []
                if len(names) != self.header.n_items:
                    raise CorruptedSectionError(f"{self.label}: {len(names)} names for {self.header.n_items} items")
                for i, n in enumerate(names):
                    problem = name_problem(n)
                    if problem:
                        raise CorruptedSectionError(f"{self.label}: item {i} is called {_show(n)}: {problem}")
                dup = first_duplicate(names)
                if dup is not None:
                    raise CorruptedSectionError(f"{self.label}: two items are called {_show(dup)}")
            else:
                names = DefaultNames(self.header.n_items)
            self._names = names
        return self._names

    def _inflate_names(self, packed: bytes) -> bytes:
        """zlib-inflate the names section in chunks, refusing it as soon as it grows past what ``n_items`` names
        can hold (``MAX_NAME_BYTES`` each) or past ``limits.max_names_bytes`` (a zip bomb)."""
        cap = min(self.limits.max_names_bytes, self.header.n_items * (MAX_NAME_BYTES + 1))
        inflater = zlib.decompressobj()
        parts, size, data = [], 0, packed
        while True:
            chunk = inflater.decompress(data, min(1 << 20, cap + 1 - size))
            parts.append(chunk)
            size += len(chunk)
            if size > cap and cap == self.limits.max_names_bytes:
                raise ResourceLimitError(
                    f"{self.label}: item names inflate to more than {cap} bytes (limit max_names_bytes)"
                )
            if size > cap:
                raise CorruptedSectionError(
                    f"{self.label}: item names inflate to more than {self.header.n_items} names of at most "
                    f"{MAX_NAME_BYTES} bytes can hold"
                )
            data = inflater.unconsumed_tail
            if not data:
                break
        if not inflater.eof or inflater.unused_data:
            raise CorruptedSectionError(f"{self.label}: item names are corrupted")
        return b"".join(parts)

    def check_values(self, n_values: int, what: str = "values") -> None:
        """Refuse to decode ``n_values`` numbers when that exceeds ``limits.max_values`` (before allocating)."""
        if n_values > self.limits.max_values:
            raise ResourceLimitError(
                f"{self.label}: decoding would produce {n_values} {what}, above the limit of "
                f"{self.limits.max_values} (max_values; raise it with SEMZIP_LIMITS if you trust this archive)"
            )

    def item_index(self, name: str) -> int:
        """Item number of the item called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InvalidInputError(f"no item named {name!r} in {self.label}") from None

    def verify(self) -> list[tuple[str, bool, str]]:
        """Check every section and block; return (section, ok, message) rows instead of raising."""
        rows: list[tuple[str, bool, str]] = [("header", True, f"{self.header_size} bytes")]
        for s in self.sections:
            try:
                self.read(s.name)
                rows.append((s.name, True, f"{s.length} bytes"))
            except CorruptedSectionError as exc:
                rows.append((s.name, False, str(exc)))
        if self.has("index"):
            try:
                bad = []
                for i in range(len(self.blocks)):
                    try:
                        self.block(i)
                    except CorruptedSectionError:
                        bad.append(i)
                rows.append(("blocks", not bad, f"{len(self.blocks)} blocks" + (f", corrupted: {bad}" if bad else "")))
            except CorruptedSectionError as exc:
                rows.append(("blocks", False, str(exc)))
        return rows
