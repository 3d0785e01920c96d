"""The Python API behind the CLI: compress, decompress and describe archives."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from semzip.codecs import get_codec
from semzip.errors import InvalidInputError
from semzip.format import Container, SectionType, atomic_write, pack, write

PathLike = str | os.PathLike


def compress_embeddings(
    x: np.ndarray,
    output: PathLike,
    codec: str = "sq",
    names: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    **params,
) -> int:
    """Compress an (n, d) embedding matrix into an archive at ``output``; returns its size in bytes."""
    enc = get_codec(codec)(**params).compress(x, names=names, progress=progress)
    return write(output, enc.header, enc.blobs, enc.blocks, enc.names)


def add_embeddings(
    archive: PathLike,
    x: np.ndarray,
    names: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append items to an archive, coded on its existing dictionary; old items' bytes are copied unchanged.

    The archive is rewritten atomically: a crash leaves the previous archive intact. Returns the new size.
    """
    with Container.open(archive) as c:
        codec = get_codec(c.header.codec).from_header(c.header)
        if not hasattr(codec, "encode_more"):
            raise InvalidInputError(f"the {c.header.codec!r} codec cannot add items to an existing archive")
        old_names = list(c.names)
        new_names = list(names) if names is not None else [
            f"item_{i:05d}" for i in range(len(old_names), len(old_names) + len(x))
        ]
        clash = sorted(set(old_names) & set(new_names))
        if clash:
            raise InvalidInputError(f"{len(clash)} new items have names already in the archive, e.g. {clash[0]!r}")
        new_blocks = codec.encode_more(c, x, progress=progress)
        old_blocks = [(b.n_items, payload) for b, payload in c.iter_blocks()]
        blobs = c.blobs()
        header = c.header
        data = pack(header, blobs, old_blocks + new_blocks, old_names + new_names)
    return atomic_write(archive, data)


def decompress(archive: PathLike, items: Sequence[str | int] | None = None) -> np.ndarray:
    """Decode an archive; ``items`` (names or numbers) restricts decoding to those items' blocks."""
    with Container.open(archive) as c:
        codec = get_codec(c.header.codec).from_header(c.header)
        idx = None if items is None else [i if isinstance(i, int) else c.item_index(i) for i in items]
        return codec.decompress(c, idx)


def describe(archive: PathLike) -> dict:
    """Header, per-section sizes and real bits per item (the whole file counted) of an archive."""
    with Container.open(archive) as c:
        h = c.header
        sections = [{"name": "header", "type": "HEADER", "bytes": c.header_size}]
        sections += [{"name": s.name, "type": SectionType(s.type).name, "bytes": s.record_size} for s in c.sections]
        d = {
            "format": "%d.%d" % c.format_version,
            "codec": h.codec,
            "params": h.params,
            "models": [m.to_json() for m in h.models],
            "n_items": h.n_items,
            "writer": h.writer,
            "bytes": c.size,
            "sections": sections,
            "bits_per_item": 8 * c.size / h.n_items if h.n_items else None,
        }
        pixels = h.params.get("pixels_per_item")
        d["bits_per_pixel"] = d["bits_per_item"] / pixels if pixels and h.n_items else None
        return d
