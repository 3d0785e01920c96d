"""The semzip container format (numpy-free): see docs/format.md for the byte layout."""

from semzip.format.container import (
    DEFAULT_LIMITS,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    LIMITS_ENV,
    MAGIC,
    WRITABLE_VERSIONS,
    BlockInfo,
    Container,
    Header,
    Limits,
    ModelRef,
    NamesPacker,
    SectionInfo,
    SectionType,
    atomic_file,
    atomic_folder,
    atomic_write,
    default_limits,
    pack,
    write,
)
from semzip.format.schema import archive_from_bytes, check_container, check_header, open_archive

__all__ = [
    "DEFAULT_LIMITS", "FORMAT_MAJOR", "FORMAT_MINOR", "LIMITS_ENV", "MAGIC", "WRITABLE_VERSIONS", "BlockInfo",
    "Container", "Header", "Limits", "ModelRef", "NamesPacker", "SectionInfo", "SectionType", "archive_from_bytes",
    "atomic_file", "atomic_folder", "atomic_write", "check_container", "check_header", "default_limits",
    "open_archive", "pack", "write",
]
