"""Image file loading for the codecs: EXIF orientation, every common mode to RGB uint8, size limits.

Pillow and numpy only. Every failure is a ``BadImageError`` (or ``ResourceLimitError`` for images above
the pixel limit) that names the file and the reason, so a folder run can report exactly what it skipped.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from semzip.errors import BadImageError, InvalidInputError, ResourceLimitError
from semzip.format import atomic_file

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image (width * height) read by default: 100 megapixels, about 300 MB as RGB uint8."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm"})

ImageLike = np.ndarray | Image.Image


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white, 16/32-bit scaled to 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode in ("L", "1") and "transparency" in img.info:
        img = img.convert("LA")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img)
        if a.dtype.kind == "f":
            a = np.clip(np.nan_to_num(a), 0.0, 1.0 if a.max(initial=0.0) <= 1.0 else 255.0)
            scale = 255.0 if a.max(initial=0.0) <= 1.0 else 1.0
            a8 = np.round(a * scale).astype(np.uint8)
        else:
            a = a.astype(np.int64)
            # 16-bit sources (I;16 and 16-bit PNGs that Pillow opens as "I") are scaled from 0..65535.
            top = 65535 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 255
            a8 = np.round(np.clip(a, 0, top) * (255.0 / top)).astype(np.uint8)
        return Image.fromarray(a8).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


_LIMIT_LOCK = threading.Lock()


class _pillow_limit:
    """Raise Pillow's own bomb limit to ``max_pixels`` for one open (we enforce ``max_pixels`` ourselves).

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and raises ``DecompressionBombError`` above twice that;
    when the caller allows more, the global is lifted under a lock and restored afterwards.
    """

    def __init__(self, max_pixels: int | None) -> None:
        self.max_pixels = max_pixels
        self._old: int | None = None
        self._locked = False
        self._warnings = warnings.catch_warnings()

    def __enter__(self) -> None:
        self._warnings.__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and (self.max_pixels is None or self.max_pixels > limit):
            _LIMIT_LOCK.acquire()
            self._locked = True
            self._old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None if self.max_pixels is None else self.max_pixels

    def __exit__(self, *exc: object) -> None:
        if self._locked:
            Image.MAX_IMAGE_PIXELS = self._old
            _LIMIT_LOCK.release()
        self._warnings.__exit__(*exc)


def load_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), upright per its EXIF orientation.

    Raises ``BadImageError`` for missing, empty, truncated, corrupt or non-image files and
    ``ResourceLimitError`` for images larger than ``max_pixels`` (``None`` disables the limit).
    """
    p = Path(path)
    if not p.is_file():
        raise BadImageError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise BadImageError(f"{p}: empty file (0 bytes)")
    try:
        with _pillow_limit(max_pixels), Image.open(p) as img:
            w, h = img.size
            if w <= 0 or h <= 0:
                raise BadImageError(f"{p}: zero-size image ({w}x{h})")
            if max_pixels is not None and w * h > max_pixels:
                raise ResourceLimitError(
                    f"{p}: image is {w}x{h} = {w * h} pixels, above the limit of {max_pixels}; "
                    "pass a larger max_pixels if you trust this file"
                )
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = np.array(_to_rgb(img), dtype=np.uint8)
    except (BadImageError, ResourceLimitError):
        raise
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(f"{p}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{p}: not an image file Pillow can identify") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on malformed files
        # (OSError, SyntaxError, struct.error, IndexError, ZeroDivisionError, ...): any of them means this
        # one file is unreadable, and must not abort a folder run
        raise BadImageError(f"{p}: cannot decode image ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadImageError(f"{p}: decoded to an unusable array of shape {arr.shape}")
    return arr


def as_rgb_array(image: ImageLike, what: str = "image") -> np.ndarray:
    """Return an in-memory image (PIL image or HxWx3 / HxW uint8 array) as RGB uint8 (H, W, 3)."""
    if isinstance(image, Image.Image):
        return np.array(_to_rgb(image), dtype=np.uint8)
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise InvalidInputError(f"{what} must be an HxWx3 uint8 array or a PIL image, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise InvalidInputError(f"{what} must have dtype uint8, got {a.dtype}")
    if a.shape[2] == 4:
        return as_rgb_array(Image.fromarray(a), what)
    return np.ascontiguousarray(a)


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """List image files (by extension) in ``folder``, sorted by their path relative to it."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a directory")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def iter_images(
    paths: Iterable[str | os.PathLike],
    strict: bool = False,
    on_skip: Callable[[Path, str], None] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield ``(path, rgb_array)`` per readable file.

    An unreadable file raises (``strict=True``) or is reported through ``on_skip(path, reason)`` and skipped;
    with neither strict nor a callback it is reported as a ``UserWarning``, never dropped silently.
    """
    for raw in paths:
        p = Path(raw)
        try:
            arr = load_image(p, max_pixels=max_pixels)
        except (BadImageError, ResourceLimitError) as exc:
            if strict:
                raise
            reason = str(exc)
            if on_skip is not None:
                on_skip(p, reason)
            else:
                warnings.warn(f"skipped {reason}", UserWarning, stacklevel=2)
            continue
        yield p, arr


def save_png(image: ImageLike, path: str | os.PathLike) -> Path:
    """Write an image as PNG atomically (temporary file in the same folder, then rename)."""
    arr = as_rgb_array(image)
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dest) as fh:
        Image.fromarray(arr).save(fh, format="PNG")
    return dest


def contact_sheet(
    images: Sequence[ImageLike],
    names: Sequence[str] | None = None,
    columns: int = 6,
    thumb: int = 128,
    background: tuple[int, int, int] = (255, 255, 255),
    aspects: Sequence[float] | None = None,
) -> np.ndarray:
    """Tile images into one RGB uint8 grid, each with an optional caption below.

    Every image keeps its aspect ratio: it is fitted into its cell and letterboxed. ``aspects`` (width / height,
    one per image) shows an image at another aspect ratio than its pixels have: a decoded image at its
    original's, when the decoder renders every item at one size (the collection generators). The cells take
    the median aspect ratio, their longer side ``thumb`` pixels: landscape photos get landscape cells.
    """
    if len(images) == 0:
        raise InvalidInputError("contact_sheet needs at least one image")
    if names is not None and len(names) != len(images):
        raise InvalidInputError(f"got {len(images)} images but {len(names)} names")
    if aspects is not None and len(aspects) != len(images):
        raise InvalidInputError(f"got {len(images)} images but {len(aspects)} aspect ratios")
    if columns < 1 or thumb < 1:
        raise InvalidInputError("columns and thumb must be positive")
    arrays = [as_rgb_array(image, what=f"image {i}") for i, image in enumerate(images)]
    shown = [float(a) if aspects is not None else arr.shape[1] / arr.shape[0]
             for arr, a in zip(arrays, aspects if aspects is not None else arrays)]
    if not all(np.isfinite(a) and a > 0 for a in shown):
        raise InvalidInputError("aspect ratios must be positive numbers")
    box_w, box_h = _fit((thumb, thumb), float(np.median(shown)))
    columns = min(columns, len(arrays))
    rows = (len(arrays) + columns - 1) // columns
    font = ImageFont.load_default()
    caption_h = 14 if names is not None else 0
    pad = 4
    cell_w, cell_h = box_w + pad, box_h + caption_h + pad
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), background)
    draw = ImageDraw.Draw(sheet)
    for i, (arr, aspect) in enumerate(zip(arrays, shown)):
        tile = Image.fromarray(arr).resize(_fit((box_w, box_h), aspect), Image.Resampling.LANCZOS)
        r, c = divmod(i, columns)
        x0, y0 = pad + c * cell_w, pad + r * cell_h
        sheet.paste(tile, (x0 + (box_w - tile.width) // 2, y0 + (box_h - tile.height) // 2))
        if names is not None:
            text = _fit_text(draw, str(names[i]), font, box_w)
            draw.text((x0, y0 + box_h + 1), text, fill=(0, 0, 0), font=font)
    return np.array(sheet, dtype=np.uint8)


def _fit(box: tuple[int, int], aspect: float) -> tuple[int, int]:
    """The largest (width, height) of aspect ratio ``aspect`` (width / height) inside ``box``, at least 1x1."""
    w, h = box
    if w / h > aspect:
        return max(1, round(h * aspect)), h
    return w, max(1, round(w / aspect))


def comparison_sheet(
    originals: Sequence[ImageLike],
    decoded: Sequence[ImageLike],
    names: Sequence[str],
    pairs_per_row: int = 3,
    thumb: int = 128,
) -> np.ndarray:
    """Originals and decoded images side by side, pair by pair in the given order (original left, named; decoded
    right), both shown at the original's aspect ratio (see :func:`contact_sheet`)."""
    if not len(originals) == len(decoded) == len(names):
        raise InvalidInputError(f"got {len(originals)} originals, {len(decoded)} decoded images and "
                                f"{len(names)} names")
    images, labels, aspects = [], [], []
    for o, d, n in zip(originals, decoded, names):
        o = as_rgb_array(o, what=f"original {n!r}")
        images += [o, d]
        labels += [str(n), "decoded"]
        aspects += [o.shape[1] / o.shape[0]] * 2
    return contact_sheet(images, labels, columns=2 * pairs_per_row, thumb=thumb, aspects=aspects)


def sheet_thumbnail(image: ImageLike, size: int = 256) -> np.ndarray:
    """A copy of ``image`` no larger than ``size`` pixels a side, aspect ratio kept (what a sheet cell needs,
    without holding full-size photos in memory)."""
    tile = Image.fromarray(as_rgb_array(image))
    tile.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.array(tile, dtype=np.uint8)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""
