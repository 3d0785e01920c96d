"""semzip: semantic image compression toolkit.

The core (this package, the container format and the entropy layer) needs only numpy and constriction;
torch, diffusers, open_clip and friends are imported lazily by the backends that need them.

The public API is re-exported here and loaded on first use (``semzip.compress_folder(...)`` imports
``semzip.api`` then), so ``import semzip`` stays light. docs/architecture.md maps the packages.
"""

from __future__ import annotations

import importlib
from typing import Any

from semzip._version import __version__
from semzip.errors import SemzipError

_PUBLIC = {  # name -> module that defines it
    **{name: "semzip.api" for name in (
        "compress_folder", "compress_embeddings", "add_folder", "add_embeddings", "decompress",
        "decompress_images", "describe", "decode_check", "decode_digest", "compress_image_text",
        "decompress_image_text", "caption_coder", "embed_concepts", "blend_item", "atom_concepts")},
    "open_archive": "semzip.archive",  # -> Archive; the format layer's checked Container: semzip.format.open_archive
    "Archive": "semzip.archive",
}

__all__ = ["SemzipError", "__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'semzip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
