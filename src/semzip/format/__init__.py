"""The semzip container format (numpy-free): see docs/format.md for the byte layout."""

from semzip.format.container import (
    DEFAULT_LIMITS,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    LIMITS_ENV,
    MAGIC,
    BlockInfo,
    Container,
    Header,
    Limits,
    ModelRef,
    NamesPacker,
    SectionInfo,
    SectionType,
    atomic_folder,
    atomic_write,
    default_limits,
    pack,
    write,
)

__all__ = [
    "DEFAULT_LIMITS", "FORMAT_MAJOR", "FORMAT_MINOR", "LIMITS_ENV", "MAGIC", "BlockInfo", "Container", "Header",
    "Limits", "ModelRef", "NamesPacker", "SectionInfo", "SectionType", "atomic_folder", "atomic_write", "default_limits", "pack", "write",
]
