"""Image folder -> embeddings, with an on-disk cache so a re-run does not re-embed unchanged images."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semzip.cache import cache_root
from semzip.data.images import IMAGE_EXTENSIONS, iter_images, list_images
from semzip.errors import BadImageError, InvalidInputError

Progress = Callable[[int], None]


@dataclass
class EmbeddedFolder:
    """Embeddings of the readable images of a folder, their names, pixel counts, and what was skipped."""

    embeddings: np.ndarray
    names: list[str]
    pixels: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


class EmbeddingCache:
    """Embeddings keyed by (file path, size, mtime) for one encoder fingerprint, stored as one .npz."""

    def __init__(self, encoder_id: str, folder: Path, enabled: bool = True):
        digest = hashlib.sha256(f"{encoder_id}|{folder.resolve()}".encode()).hexdigest()[:24]
        self.path = cache_root() / "embeddings" / f"{digest}.npz"
        self.enabled = enabled
        self.table: dict[str, tuple[np.ndarray, int]] = {}
        if enabled and self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    for k, e, p in zip(z["keys"], z["embeddings"], z["pixels"]):
                        self.table[str(k)] = (e, int(p))
            except (OSError, ValueError, KeyError):
                self.table = {}  # a damaged cache is only a cache: rebuild it

    def get(self, key: str) -> tuple[np.ndarray, int] | None:
        return self.table.get(key)

    def save(self, entries: dict[str, tuple[np.ndarray, int]]) -> None:
        if not self.enabled or not entries:
            return
        from semzip.format import atomic_file

        keys = np.array(list(entries), dtype=str)
        emb = np.stack([e for e, _ in entries.values()]).astype(np.float32)
        pix = np.array([p for _, p in entries.values()], dtype=np.int64)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.path) as fh:  # no temporary file is left behind on failure
                np.savez(fh, keys=keys, embeddings=emb, pixels=pix)
        except OSError as exc:  # a cache that cannot be written (read-only, full) costs time, not the run
            import logging

            from semzip.errors import describe_os_error

            logging.getLogger(__name__).warning("embeddings not cached: %s", describe_os_error(exc))


def folder_files(
    folder: Path,
    recursive: bool = False,
    strict: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files of a folder in a deterministic order, and the other files (reported, not dropped).

    Non-image files go to ``on_skip(name, reason)``; with ``strict`` the first one raises ``BadImageError``.
    """
    if not folder.is_dir():
        raise InvalidInputError(f"no such folder: {folder}")
    images = list_images(folder, recursive=recursive)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    others = sorted(
        p.relative_to(folder).as_posix()
        for p in candidates
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTENSIONS
    )
    skipped = [(o, "not an image file (unknown extension)") for o in others]
    if strict and skipped:
        raise BadImageError(f"{skipped[0][0]}: {skipped[0][1]} (remove it or drop --strict)")
    for name, reason in skipped:
        if on_skip:
            on_skip(name, reason)
    return images, skipped


def _batches(it: Iterator, size: int) -> Iterator[list]:
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def embed_folder(
    folder: str | os.PathLike,
    encoder,
    strict: bool = False,
    recursive: bool = False,
    use_cache: bool = True,
    on_skip: Callable[[str, str], None] | None = None,
    progress: Progress | None = None,
    batch_size: int = 32,
) -> EmbeddedFolder:
    """Embed every readable image of ``folder``; unreadable or non-image files are reported by name.

    With ``strict`` the first bad file raises ``BadImageError`` instead. Images are read and embedded in
    batches (memory stays bounded by the batch), and cached embeddings are reused.
    """
    root = Path(folder)
    paths, skipped = folder_files(root, recursive, strict, on_skip)
    cache = EmbeddingCache(f"{encoder.name}|{encoder.fingerprint}", root, enabled=use_cache)
    rows: dict[str, tuple[np.ndarray, int]] = {}
    todo: list[Path] = []
    for p in paths:
        hit = cache.get(_file_key(p))
        if hit is not None:
            rows[p.as_posix()] = hit
            if progress:
                progress(1)
        else:
            todo.append(p)
    n_cached = len(rows)

    def skip(path: Path, reason: str) -> None:
        skipped.append((path.relative_to(root).as_posix(), reason))
        if on_skip:
            on_skip(path.relative_to(root).as_posix(), reason)
        if progress:
            progress(1)

    fresh: dict[str, tuple[np.ndarray, int]] = {}
    for batch in _batches(iter_images(todo, strict=strict, on_skip=skip), batch_size):
        emb = encoder.encode_images([a for _, a in batch])
        for (p, arr), e in zip(batch, emb):
            fresh[_file_key(p)] = (e, arr.shape[0] * arr.shape[1])
            rows[p.as_posix()] = fresh[_file_key(p)]
        if progress:
            progress(len(batch))
    if fresh:
        cache.save({**cache.table, **fresh})
    kept = [p for p in paths if p.as_posix() in rows]
    if not kept:
        raise InvalidInputError(f"no readable images in {root}")
    return EmbeddedFolder(
        embeddings=np.stack([rows[p.as_posix()][0] for p in kept]).astype(np.float32),
        names=[p.relative_to(root).as_posix() for p in kept],
        pixels=[rows[p.as_posix()][1] for p in kept],
        skipped=skipped,
        cached=n_cached,
    )
