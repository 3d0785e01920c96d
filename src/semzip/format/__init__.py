"""The semzip container format (numpy-free): see docs/format.md for the byte layout."""

from semzip.format.container import (
    DEFAULT_LIMITS,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    BlockInfo,
    Container,
    Header,
    Limits,
    ModelRef,
    SectionInfo,
    SectionType,
    atomic_write,
    pack,
    write,
)

__all__ = [
    "DEFAULT_LIMITS", "FORMAT_MAJOR", "FORMAT_MINOR", "MAGIC", "BlockInfo", "Container", "Header", "Limits",
    "ModelRef", "SectionInfo", "SectionType", "atomic_write", "pack", "write",
]
