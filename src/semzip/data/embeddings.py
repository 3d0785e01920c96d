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


def load_embeddings(path: str | Path) -> np.ndarray:
    """Load an (n, d) embedding matrix from a .npy file (no pickles are ever loaded)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such embeddings file: {p}")
    if p.suffix.lower() != ".npy":
        raise InvalidInputError(f"unsupported embeddings file {p.name}: expected a .npy array")
    try:
        x = np.load(p, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise InvalidInputError(f"cannot read {p} as a .npy array: {exc}") from None
    return validate_embeddings(x, what=f"embeddings in {p.name}")
