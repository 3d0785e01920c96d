"""Evaluation datasets: a folder of images (Kodak and CLIC layouts recognised) or a CSV of image paths.

The order of items is deterministic (sorted relative paths for folders, row order for CSVs) and every set
has a checksum, sha256 over each item's name and file bytes, which the evaluation records in each result
file so that numbers are only ever compared on the same images.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from semzip.data.images import IMAGE_EXTENSIONS, list_images, load_image
from semzip.errors import InvalidInputError

_KODAK_NAME = re.compile(r"^kodim\d\d\.png$", re.IGNORECASE)
# CLIC releases unpack into one folder per track and split (professional/valid, mobile/test, ...).
_CLIC_SUBDIRS = frozenset({"professional", "mobile", "valid", "validation", "test", "train"})
_PATH_COLUMNS = ("path", "image", "file", "filename")


@dataclass(frozen=True)
class ImageItem:
    """One image of a dataset: its name (relative path), file and optional caption."""

    name: str
    path: Path
    caption: str | None = None


@dataclass
class Dataset:
    """An ordered list of images with a layout kind ("kodak", "clic", "folder" or "csv") and a checksum."""

    name: str
    kind: str
    root: Path
    items: list[ImageItem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [it.name for it in self.items]

    @property
    def captions(self) -> list[str | None]:
        return [it.caption for it in self.items]

    @property
    def has_captions(self) -> bool:
        return all(it.caption for it in self.items)

    @cached_property
    def checksum(self) -> str:
        """sha256 over every item's name and file bytes, in dataset order (``sha256:<hex>``)."""
        h = hashlib.sha256()
        for it in self.items:
            name = it.name.encode()
            h.update(len(name).to_bytes(8, "little") + name)
            data = it.path.read_bytes()
            h.update(len(data).to_bytes(8, "little") + data)
        return "sha256:" + h.hexdigest()

    def load(self, index: int) -> np.ndarray:
        """Item ``index`` as RGB uint8 (H, W, 3)."""
        return load_image(self.items[index].path)

    def load_all(self) -> list[np.ndarray]:
        """Every image as RGB uint8, in dataset order."""
        return [self.load(i) for i in range(len(self))]

    def describe(self) -> dict:
        """What a result file records about the set."""
        return {"name": self.name, "kind": self.kind, "root": str(self.root), "n_images": len(self),
                "checksum": self.checksum, "captions": self.has_captions}


def _read_captions(path: Path) -> dict[str, str]:
    """A CSV ``image,caption`` (header row required) as {file name: caption}."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    cols = {c.lower(): c for c in rows[0]}
    key = next((cols[c] for c in _PATH_COLUMNS if c in cols), None)
    cap = cols.get("caption") or cols.get("text")
    if key is None or cap is None:
        raise InvalidInputError(f"{path}: captions CSV needs an image/path column and a caption column")
    return {r[key].strip(): (r[cap] or "").strip() for r in rows}


def _attach(items: list[ImageItem], captions: dict[str, str]) -> list[ImageItem]:
    out = []
    for it in items:
        cap = captions.get(it.name, captions.get(Path(it.name).name))
        out.append(ImageItem(it.name, it.path, cap or it.caption))
    return out


def _from_folder(root: Path) -> Dataset:
    flat = list_images(root)
    subdirs = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    if flat:
        kind = "kodak" if all(_KODAK_NAME.match(p.name) for p in flat) else "folder"
        paths = flat
    elif subdirs & _CLIC_SUBDIRS:
        kind, paths = "clic", list_images(root, recursive=True)
    else:
        kind, paths = "folder", list_images(root, recursive=True)
    if not paths:
        raise InvalidInputError(f"{root}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found")
    items = [ImageItem(p.relative_to(root).as_posix(), p) for p in paths]
    return Dataset(root.name, kind, root, items)


def _from_csv(path: Path) -> Dataset:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InvalidInputError(f"{path}: empty CSV")
    cols = {c.lower(): c for c in rows[0]}
    key = next((cols[c] for c in _PATH_COLUMNS if c in cols), None)
    if key is None:
        raise InvalidInputError(f"{path}: needs a column named one of {', '.join(_PATH_COLUMNS)}")
    cap = cols.get("caption") or cols.get("text")
    items, seen = [], set()
    for r in rows:
        rel = (r[key] or "").strip()
        if not rel:
            continue
        p = Path(rel) if os.path.isabs(rel) else path.parent / rel
        if not p.is_file():
            raise InvalidInputError(f"{path}: listed image {rel!r} not found at {p}")
        if rel in seen:
            raise InvalidInputError(f"{path}: image {rel!r} listed twice")
        seen.add(rel)
        items.append(ImageItem(rel, p, (r.get(cap) or "").strip() or None if cap else None))
    if not items:
        raise InvalidInputError(f"{path}: lists no images")
    return Dataset(path.stem, "csv", path.parent, items)


def load_dataset(source: str | os.PathLike, captions: str | os.PathLike | None = None,
                 limit: int | None = None) -> Dataset:
    """A folder of images or a CSV (``path[,caption]``) as a :class:`Dataset`; ``captions`` is an optional
    ``image,caption`` CSV matched on names; ``limit`` keeps the first images (for quick runs)."""
    src = Path(source)
    if src.is_dir():
        ds = _from_folder(src)
    elif src.is_file() and src.suffix.lower() == ".csv":
        ds = _from_csv(src)
    else:
        raise InvalidInputError(f"{src}: not a folder of images or a .csv list of images")
    if captions is not None:
        ds.items = _attach(ds.items, _read_captions(Path(captions)))
    if limit is not None:
        if limit < 1:
            raise InvalidInputError(f"limit must be positive, got {limit}")
        ds.items = ds.items[:limit]
    return ds
