"""One store shard from a folder of images: the piece the streaming engine and the Ray executor share.

``semzip.scale.stream`` embeds shards one after the other in its own process; the Ray executor's actors
(``semzip.scale.distributed``) call the same :func:`embed_shard` on their workers. Both import it from here,
so neither of them imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semzip.scale.store import EmbeddingStore, plan_fingerprint

__all__ = ["embed_shard", "folder_plan"]


def folder_plan(folder: Path, paths: Sequence[Path], encoder: Any) -> str:
    entries = [f"encoder|{encoder.name}|{encoder.fingerprint}"]
    for p in paths:
        entries.append(f"{p.relative_to(folder).as_posix()}|{p.stat().st_size}")
    return plan_fingerprint(entries)


def embed_shard(store: EmbeddingStore, i: int, folder: Path, rel_paths: Sequence[str], encoder: Any,
                strict: bool = False, on_skip: Callable[[str, str], None] | None = None) -> int:
    """Read and embed the images of shard ``i`` and write the shard; returns the items written."""
    from semzip.data.images import iter_images

    skipped: list[tuple[str, str]] = []

    def skip(path: Path, reason: str) -> None:
        name = path.relative_to(folder).as_posix()
        skipped.append((name, reason))
        if on_skip:
            on_skip(name, reason)

    names, pixels, arrays = [], [], []
    for path, arr in iter_images([folder / r for r in rel_paths], strict=strict, on_skip=skip):
        names.append(path.relative_to(folder).as_posix())
        pixels.append(arr.shape[0] * arr.shape[1])
        arrays.append(arr)
    emb = encoder.encode_images(arrays) if arrays else np.zeros((0, store.dim), np.float32)
    store.write_shard(i, names, pixels, emb, skipped)
    return len(names)
