"""semzip's own exception types: one per user-facing failure, each with a message that says what to do.

The CLI turns any ``SemzipError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class SemzipError(Exception):
    """Base class of every error semzip raises on purpose."""

    exit_code = 2


class InvalidInputError(SemzipError, ValueError):
    """An argument or an input file is not usable (wrong shape, wrong type, missing file)."""


class NotAContainerError(SemzipError):
    """The file does not start with semzip's magic bytes."""


class UnsupportedVersionError(SemzipError):
    """The container was written by a newer (or unknown) major format version."""


class CorruptedSectionError(SemzipError):
    """A section is truncated, its CRC32 does not match, or its content cannot be parsed."""


class EntropyDecodeError(CorruptedSectionError):
    """An entropy-coded stream does not decode consistently (corruption or a model mismatch)."""


class MissingModelError(SemzipError):
    """A model the stream needs is not installed or not found at the given path."""


class ModelMismatchError(SemzipError):
    """The model offered for decoding is not the one the stream was encoded with."""


class BadImageError(SemzipError):
    """An image file cannot be read (corrupt, unsupported mode, zero size, too large)."""


class ResourceLimitError(SemzipError):
    """A declared size exceeds a configured safety limit (decompression-bomb guard)."""


class MissingDependencyError(SemzipError):
    """An optional package (torch, diffusers, ...) needed for this operation is not installed."""


_OS_REASONS = {
    "EROFS": "the file system is read-only",
    "ENOSPC": "no space left on the device",
    "EDQUOT": "the disk quota is exceeded",
    "ENAMETOOLONG": "the name is too long (file systems allow 255 bytes per name, 4096 per path)",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "ENOENT": "no such file or folder",
    "ENOTDIR": "a part of the path is not a folder",
    "EISDIR": "it is a folder",
    "EEXIST": "it already exists",
    "EFBIG": "the file is too large for this file system",
    "EIO": "input/output error (a failing disk or a lost network mount?)",
    "EMFILE": "too many open files",
    "EPIPE": "the output was closed",
}


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation: the path it concerns and the reason in words."""
    import errno

    reason = _OS_REASONS.get(errno.errorcode.get(exc.errno or -1, ""), "") or exc.strerror or str(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    return f"{where}: {reason}" if where else reason
