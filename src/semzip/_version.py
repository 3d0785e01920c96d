"""The package version, in one place (``semzip.__version__`` and the archive headers' ``writer`` read it)."""

__version__ = "0.1.0"
