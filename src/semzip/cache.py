"""Where semzip keeps its caches (embeddings, converted and dequantized models): one place for every module."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root"]

CACHE_ENV = "SEMZIP_CACHE"


def cache_root() -> Path:
    """``$SEMZIP_CACHE`` (``~`` expanded) if set and not empty, else ``~/.cache/semzip``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "semzip"
