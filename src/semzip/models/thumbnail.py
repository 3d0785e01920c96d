"""The offline default encoder/decoder pair: a colour-layout thumbnail embedding (not learned, not semantic).

Encoding: box-filter the image to a ``grid`` x ``grid`` thumbnail (aspect ignored), centre RGB to
[-0.5, 0.5], rotate it with the orthonormal opponent-colour transform (luma (R+G+B)/sqrt3, red-green
(R-G)/sqrt2, yellow-blue (R+G-2B)/sqrt6), flatten to ``t`` and append a constant scale component ``c``:
``v = [t, c] / ||[t, c]||``. Because the transform is orthonormal, Euclidean distances between ``t`` equal
distances between RGB thumbnails. Decoding inverts it: ``t = v[:-1] * c / v[-1]``, back to RGB, then
bicubic upsampling to the output size. It lets the whole collection pipeline run, and be looked at,
without any downloaded model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from semzip.errors import InvalidInputError
from semzip.models.encoders import ImageEncoder

# Rows: opponent axes in terms of centred (R, G, B). Orthonormal, so its inverse is its transpose.
OPPONENT = np.array(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
        [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
    ],
    dtype=np.float64,
)

DEFAULT_GRID = 16


def thumbnail_space(grid: int = DEFAULT_GRID) -> str:
    """Embedding-space identifier of the thumbnail pair at this grid size."""
    return f"thumbnail-{grid}x{grid}-opponent-v1"


def thumbnail_dim(grid: int = DEFAULT_GRID) -> int:
    """Embedding dimension: grid * grid * 3 colour values + 1 scale component."""
    return grid * grid * 3 + 1


def scale_component(grid: int = DEFAULT_GRID) -> float:
    """The constant ``c``: sqrt(D)/4 for D = 3*grid^2, about the norm of ``t`` for a natural image
    (per-value spread ~0.25), so neither part dominates the unit vector."""
    return math.sqrt(3 * grid * grid) / 4.0


def _check_grid(grid: int) -> int:
    if not isinstance(grid, (int, np.integer)) or not 1 <= int(grid) <= 256:
        raise InvalidInputError(f"grid must be an integer in 1..256, got {grid!r}")
    return int(grid)


def thumbnail(image: np.ndarray, grid: int = DEFAULT_GRID) -> np.ndarray:
    """Area-averaged (box filter) ``grid`` x ``grid`` x 3 float thumbnail in [0, 1] of an RGB uint8 image."""
    a = np.asarray(image)
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(a[:, :, ch], dtype=np.float32)).resize(
                (grid, grid), Image.Resampling.BOX
            ),
            dtype=np.float64,
        )
        for ch in range(3)
    ]
    return np.stack(planes, axis=2) / 255.0


def _resize_float(thumb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a float HxWx3 image to ``size`` = (W, H), per channel in float32."""
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(thumb[:, :, ch], dtype=np.float32)).resize(
                size, Image.Resampling.BICUBIC
            ),
            dtype=np.float64,
        )
        for ch in range(3)
    ]
    return np.stack(planes, axis=2)


class ThumbnailEncoder(ImageEncoder):
    """Colour-layout thumbnail embedding (dim = 3 * grid^2 + 1). Offline, deterministic, not semantic."""

    def __init__(self, grid: int = DEFAULT_GRID, batch_size: int = 256) -> None:
        self.grid = _check_grid(grid)
        self.batch_size = batch_size
        self.dim = thumbnail_dim(self.grid)
        self.space = thumbnail_space(self.grid)
        self.name = "thumbnail" if self.grid == DEFAULT_GRID else f"thumbnail:{self.grid}"
        self.scale = scale_component(self.grid)

    @property
    def fingerprint(self) -> str:
        from semzip.models.fingerprint import fingerprint_text

        return fingerprint_text(f"{self.space};c={self.scale!r}")

    def _encode_image_batch(self, images: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(images), self.dim), dtype=np.float64)
        for i, a in enumerate(images):
            t = (thumbnail(a, self.grid) - 0.5) @ OPPONENT.T
            out[i, :-1] = t.reshape(-1)
            out[i, -1] = self.scale
        return out

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        raise InvalidInputError(
            "the thumbnail encoder has no text tower; use a CLIP encoder for text concepts"
        )


class ThumbnailDecoder:
    """Renders thumbnail embeddings back to RGB uint8 images (bicubic upsampling), deterministically."""

    def __init__(self, grid: int = DEFAULT_GRID, size: tuple[int, int] = (256, 256)) -> None:
        self.grid = _check_grid(grid)
        self.size = check_size(size)
        self.dim = thumbnail_dim(self.grid)
        self.space = thumbnail_space(self.grid)
        self.scale = scale_component(self.grid)

    def thumbnails(self, embeddings: np.ndarray) -> np.ndarray:
        """Float RGB thumbnails (n, grid, grid, 3) in [0, 1] recovered from embeddings."""
        v = np.asarray(embeddings, dtype=np.float64)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise InvalidInputError(
                f"thumbnail embeddings of {self.space} must have shape (n, {self.dim}), got {v.shape}"
            )
        if not np.isfinite(v).all():
            raise InvalidInputError("thumbnail embeddings contain NaN or infinite values")
        last = v[:, -1:]
        # A decoded (lossy) vector may have a tiny or negative scale component: clamp it rather than blow up.
        last = np.maximum(last, 1e-3 * np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
        t = v[:, :-1] * (self.scale / last)
        rgb = t.reshape(-1, self.grid, self.grid, 3) @ OPPONENT + 0.5
        return np.clip(rgb, 0.0, 1.0)

    def decode(self, embeddings: np.ndarray, size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """RGB uint8 images (H, W, 3) of ``size`` = (W, H) (default: the decoder's size)."""
        w, h = check_size(size) if size is not None else self.size
        out = []
        for thumb in self.thumbnails(embeddings):
            up = thumb if (w, h) == (self.grid, self.grid) else _resize_float(thumb, (w, h))
            out.append(np.clip(np.rint(up * 255.0), 0, 255).astype(np.uint8))
        return out

    def info(self) -> dict[str, Any]:
        return {"space": self.space, "grid": self.grid, "size": list(self.size)}


def check_size(size: Any) -> tuple[int, int]:
    try:
        w, h = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InvalidInputError(f"size must be a (width, height) pair, got {size!r}") from None
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise InvalidInputError(f"size must be within 1..16384 pixels per side, got {size!r}")
    return w, h
