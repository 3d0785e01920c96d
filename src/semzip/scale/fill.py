"""Filling an embedding store: from an array, a .npy or .parquet file, or a folder of images (embedded shard
by shard, in this process or by a Ray executor's actors). Every fill is resumable: re-running it writes only
the shards that are missing. The streaming engine (:mod:`semzip.scale.stream`) compresses what these write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semzip.errors import InvalidInputError
from semzip.scale.shards import embed_shard, folder_plan
from semzip.scale.store import EmbeddingStore, plan_fingerprint

__all__ = ["fill_store", "fill_store_from_array", "fill_store_from_file", "fill_store_from_folder"]

ProgressFactory = Callable[[int, str], Any]  # (total, description) -> context manager yielding advance(n)


@contextlib.contextmanager
def no_progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A ProgressFactory that reports nothing."""
    yield lambda n: None


def fill_store_from_array(
    root: str | os.PathLike,
    x: Any,
    names: Sequence[str] | None = None,
    *,
    source: str,
    shard_size: int = 4096,
    space: str = "unknown",
    progress: ProgressFactory | None = None,
) -> EmbeddingStore:
    """Copy an (n, d) array-like (a memory-mapped .npy is read shard by shard) into a store; resumable."""
    if getattr(x, "ndim", None) != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInputError(f"embeddings must be a non-empty 2-D array, got shape {getattr(x, 'shape', None)}")
    n, d = int(x.shape[0]), int(x.shape[1])
    if names is not None and len(names) != n:
        raise InvalidInputError(f"{len(names)} names for {n} embeddings")
    store = EmbeddingStore.create(root, dim=d, n_items=n, shard_size=shard_size, plan=plan_fingerprint([source]),
                                  source=source, space=space, named=names is not None)
    todo = store.missing_shards()
    with (progress or no_progress)(n, "writing embedding store") as advance:
        advance(n - sum(len(range(*store.shard_range(i))) for i in todo))
        for i in todo:
            start, stop = store.shard_range(i)
            chunk = np.asarray(x[start:stop], dtype=np.float32)
            shard_names = list(names[start:stop]) if names is not None else [f"item_{j:05d}" for j in range(start, stop)]
            store.write_shard(i, shard_names, np.zeros(stop - start, np.int64), chunk)
            advance(stop - start)
    return store


def fill_store_from_file(
    root: str | os.PathLike,
    path: str | os.PathLike,
    *,
    shard_size: int = 4096,
    space: str = "unknown",
    names: Sequence[str] | None = None,
    progress: ProgressFactory | None = None,
) -> EmbeddingStore:
    """Fill a store from a .npy (memory-mapped) or .parquet (read in row batches) embeddings file."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such embeddings file: {p}")
    st = p.stat()
    source = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if p.suffix.lower() == ".npy":
        try:
            x = np.load(p, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise InvalidInputError(f"cannot read {p} as a .npy array: {exc}") from None
        if x.dtype.kind not in "fiu":
            raise InvalidInputError(f"embeddings in {p.name} must be numeric, got dtype {x.dtype}")
        return fill_store_from_array(root, x, names, source=source, shard_size=shard_size, space=space,
                                     progress=progress)
    if p.suffix.lower() != ".parquet":
        raise InvalidInputError(f"unsupported embeddings file {p.name}: expected .npy or .parquet")
    from semzip._optional import require
    from semzip.data.embeddings import NAME_COLUMNS

    pq = require("pyarrow.parquet", "distributed", "reading parquet embeddings")
    try:
        pf = pq.ParquetFile(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        raise InvalidInputError(f"cannot read {p} as parquet: {exc}") from None
    cols = pf.schema_arrow.names
    column = next((c for c in ("embedding", "embeddings", "clip_embedding") if c in cols), None)
    if column is None:
        raise InvalidInputError(f"{p.name} has no 'embedding' column (columns: {', '.join(cols)})")
    name_col = next((c for c in NAME_COLUMNS if c in cols), None)
    n = pf.metadata.num_rows
    if n == 0:
        raise InvalidInputError(f"{p.name} holds no rows")

    class _Rows:  # array-like over the parquet file: slices requested in increasing order, read in batches
        ndim = 2

        def __init__(self) -> None:
            first = next(pf.iter_batches(batch_size=1, columns=[column]))
            self.shape = (n, len(first.column(0)[0]))
            self._it = pf.iter_batches(batch_size=shard_size, columns=[column])
            self._buf: list[np.ndarray] = []
            self._buf_start = 0  # plan position of the first buffered row

        def __getitem__(self, sl: slice) -> np.ndarray:
            # batches need not align with shards (row groups): buffer rows until the slice is covered;
            # a resumed fill asks only for the missing shards, so rows before them are read and dropped
            while self._buf_start + sum(len(b) for b in self._buf) < sl.stop:
                batch = next(self._it)
                try:
                    self._buf.append(np.asarray(batch.column(0).to_pylist(), dtype=np.float32).reshape(-1, self.shape[1]))
                except (ValueError, TypeError):
                    raise InvalidInputError(f"{p.name}: column {column!r} is not a list of equal-length "
                                            "numbers") from None
            rows = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
            out = rows[sl.start - self._buf_start : sl.stop - self._buf_start]
            self._buf, self._buf_start = [rows[sl.stop - self._buf_start :]], sl.stop
            return out

    rows = _Rows()
    if names is None and name_col:
        names = [str(v) for v in pf.read(columns=[name_col]).column(0).to_pylist()]
    return fill_store_from_array(root, rows, names, source=source, shard_size=shard_size, space=space,
                                 progress=progress)


def fill_store_from_folder(
    root: str | os.PathLike,
    folder: str | os.PathLike,
    encoder: Any,
    *,
    shard_size: int = 4096,
    recursive: bool = False,
    strict: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    progress: ProgressFactory | None = None,
    executor: Any = None,
    device: str | None = None,
) -> EmbeddingStore:
    """Embed a folder of images shard by shard into a store; re-running resumes at the missing shards.

    With a Ray executor (``semzip.scale.distributed.RayExecutor``) the shards are embedded by Ray Data actors that
    each hold the encoder (one per GPU when there are GPUs, unless ``device`` says where they run).
    """
    from semzip.data.folders import folder_files

    folder = Path(folder)
    paths, _others = folder_files(folder, recursive, strict, on_skip)
    if not paths:
        raise InvalidInputError(f"no image files in {folder}")
    store = EmbeddingStore.create(
        root, dim=int(encoder.dim), n_items=len(paths), shard_size=shard_size,
        plan=folder_plan(folder, paths, encoder), source=str(folder.resolve()), space=encoder.space,
        encoder={"name": encoder.name, "fingerprint": encoder.fingerprint},
    )
    todo = store.missing_shards()
    rel = [p.relative_to(folder).as_posix() for p in paths]
    with (progress or no_progress)(len(paths), "embedding images") as advance:
        advance(len(paths) - sum(len(range(*store.shard_range(i))) for i in todo))
        if executor is not None and hasattr(executor, "embed_shards"):
            where = {} if device is None else {"device": device}
            for i, n_planned in executor.embed_shards(store, folder, rel, todo, encoder, strict, **where):
                advance(n_planned)
        else:
            for i in todo:
                start, stop = store.shard_range(i)
                embed_shard(store, i, folder, rel[start:stop], encoder, strict, on_skip)
                advance(stop - start)
    if not any(store.shard_lengths()):
        raise InvalidInputError(f"no readable images in {folder}")
    return store


def fill_store(
    root: str | os.PathLike,
    source: str | os.PathLike,
    *,
    executor: Any = None,
    encoder: str = "thumbnail",
    shard_size: int = 4096,
    space: str = "unknown",
    names: Sequence[str] | None = None,
    recursive: bool = False,
    strict: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    progress: ProgressFactory | None = None,
    device: str | None = None,
) -> EmbeddingStore:
    """Fill (or resume) a store from a folder of images (embedded with ``encoder`` on ``device``: see
    :func:`semzip.api.device_kw`) or an embeddings file (no model runs: ``device`` is refused)."""
    if not Path(source).exists():
        raise InvalidInputError(f"no such folder or file: {source}")
    if Path(source).is_dir():
        from semzip.api import device_kw
        from semzip.models.registry import load_encoder

        where = device_kw("encoder", encoder, device)
        return fill_store_from_folder(root, source, load_encoder(encoder, **where), shard_size=shard_size,
                                      recursive=recursive, strict=strict, on_skip=on_skip, progress=progress,
                                      executor=executor, device=where.get("device"))
    if device is not None:
        raise InvalidInputError("--device does not apply to an embeddings file (no model runs)")
    return fill_store_from_file(root, source, shard_size=shard_size, space=space, names=names, progress=progress)
