"""Loading precomputed embeddings (.npy), the common input of people who already hold CLIP embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semzip.errors import InvalidInputError


def validate_embeddings(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 (n, d) array, or raise a clear error saying what is wrong."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got dtype {x.dtype}")
    if x.ndim != 2:
        raise InvalidInputError(f"{what} must be a 2-D array (items x dimensions), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInputError(f"{what} are empty (shape {x.shape})")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise InvalidInputError(f"{what} contain NaN or infinite values (first at row {bad})")
    return x


NAME_COLUMNS = ("name", "image_path", "url", "key")


def load_embeddings_with_names(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Embeddings and, for parquet files, item names (from a name/image_path/url/key column if present)."""
    p = Path(path)
    if p.suffix.lower() != ".parquet":
        return load_embeddings(p), None
    if not p.is_file():
        raise InvalidInputError(f"no such embeddings file: {p}")
    from semzip._optional import require

    pq = require("pyarrow.parquet", "clip", "reading parquet embeddings")
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise InvalidInputError(f"cannot read {p} as parquet: {exc}") from None
    column = next((c for c in ("embedding", "embeddings", "clip_embedding") if c in table.column_names), None)
    if column is None:
        raise InvalidInputError(f"{p.name} has no 'embedding' column (columns: {', '.join(table.column_names)})")
    try:
        x = np.asarray(table.column(column).to_pylist(), dtype=np.float32)
    except (ValueError, TypeError):
        raise InvalidInputError(f"{p.name}: column {column!r} is not a list of equal-length numbers") from None
    names_col = next((c for c in NAME_COLUMNS if c in table.column_names), None)
    names = [str(v) for v in table.column(names_col).to_pylist()] if names_col else None
    return validate_embeddings(x, what=f"embeddings in {p.name}"), names


def load_embeddings(path: str | Path) -> np.ndarray:
    """Load an (n, d) embedding matrix from a .npy (or .parquet) file; no pickles are ever loaded."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        return load_embeddings_with_names(p)[0]
    if not p.is_file():
        raise InvalidInputError(f"no such embeddings file: {p}")
    if p.suffix.lower() != ".npy":
        raise InvalidInputError(f"unsupported embeddings file {p.name}: expected .npy or .parquet")
    try:
        x = np.load(p, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise InvalidInputError(f"cannot read {p} as a .npy array: {exc}") from None
    return validate_embeddings(x, what=f"embeddings in {p.name}")
