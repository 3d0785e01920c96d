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
