"""Decoded items written to a folder: one PNG per item under a collision-free name, generation.json (the
settings, to decode again the same way), a contact sheet and, given the originals, a side-by-side sheet.

A new folder appears only complete (:func:`semzip.outputs.output_folder`); item ``i`` is rendered with seed
``seed + i`` whether it is decoded alone or with all the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semzip.errors import InvalidInputError
from semzip.format import atomic_write
from semzip.format.names import RESERVED_FILES, output_files
from semzip.outputs import output_folder

SHEET_ITEMS = 200
"""Items shown on a decoded folder's contact sheet and originals-vs-decoded sheet (the first ones, in order)."""
COMPARISON_SHEET = "originals_vs_decoded.png"


def item_files(names: Sequence[str], numbers: Sequence[int]) -> list[str]:
    """The output file names of items ``numbers``: computed over all the archive's ``names``, so an item
    decoded alone gets the same file as in a full decode."""
    if getattr(names, "generated", False):
        return output_files([names[i] for i in numbers])  # default names are distinct and safe as they are
    every = output_files(names)
    return [every[i] for i in numbers]


@dataclass
class FolderPlan:
    """Where decoded items go: the folder, the archive they come from, the items' numbers, files and names,
    and small copies of their originals (None without ``--originals``)."""

    out_dir: Path
    archive: str
    numbers: list[int]
    files: list[str]
    names: list[str]
    originals: list[np.ndarray | None] | None = None
    force: bool = False

    def folder(self):
        """The output folder context (:func:`semzip.outputs.output_folder`)."""
        return output_folder(self.out_dir, self.force, inputs=[Path(self.archive)],
                             will_write=[*self.files, *RESERVED_FILES])

    def finish(self, out: Path, settings: dict, shown: Sequence[np.ndarray]) -> None:
        """generation.json and the sheets."""
        atomic_write(out / "generation.json", json.dumps({"archive": self.archive, **settings}, indent=2).encode())
        write_sheets(out, shown, self.names, self.originals)


def render_embeddings(plan: FolderPlan, x: np.ndarray, gen, settings: dict, seed: int = 0,
                      steps: int | None = None, guidance: float | None = None, size: tuple[int, int] | None = None,
                      batch_size: int = 8, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Render embeddings ``x`` (one row per planned item) with the generator ``gen`` into the plan's folder.
    ``settings``: what generation.json records, ``gen.params(...)`` of these settings (called by the caller
    before decoding, so that a setting the generator refuses costs no decoding)."""
    from semzip.data.images import save_png

    written, shown = [], []
    with plan.folder() as out:
        for start in range(0, len(x), batch_size):
            imgs = gen.generate(x[start : start + batch_size], seed=seed + plan.numbers[start], steps=steps,
                                guidance=guidance, size=size)
            for file, img in zip(plan.files[start : start + batch_size], imgs):
                written.append(Path(plan.out_dir) / save_png(img, out / file).name)
                if len(shown) < SHEET_ITEMS:
                    shown.append(img)
            if progress is not None:
                progress(len(imgs))
        plan.finish(out, settings, shown)
    return written


def refine_items(plan: FolderPlan, decoded: Sequence, ref, settings: dict, recorded: dict,
                 progress: Callable[[int], None] | None = None) -> list[Path]:
    """Refine decoded image-text items (image + caption) with ``ref`` into the plan's folder, plus captions.txt.
    ``settings``: the refiner's ``spec``, ``seed``, ``steps``, ``strength`` and ``guidance``; ``recorded``: its
    ``params()`` for them, written to generation.json."""
    from semzip.data.images import save_png

    kw = {k: settings[k] for k in ("steps", "strength", "guidance")}
    written, shown = [], []
    with plan.folder() as out:
        for number, file, d in zip(plan.numbers, plan.files, decoded):
            img = ref.refine([d.image], [d.caption], seed=settings["seed"] + number, **kw)[0]
            if len(shown) < SHEET_ITEMS:
                shown.append(img)
            written.append(Path(plan.out_dir) / save_png(img, out / file).name)
            if progress is not None:
                progress(1)
        atomic_write(out / "captions.txt", "".join(f"{n}\t{' '.join(d.caption.split())}\n"
                                                    for n, d in zip(plan.names, decoded)).encode())
        plan.finish(out, recorded, shown)
    return written


def load_originals(folder: str | Path | None, names: Sequence[str],
                   note: Callable[[str], None] | None) -> list[np.ndarray | None] | None:
    """Small copies of the original images of the first :data:`SHEET_ITEMS` items, read from ``folder`` (the
    source folder: item names are paths relative to it), None where an item has no readable file there.
    Read before any decoding: a folder holding none of them is refused."""
    if folder is None:
        return None
    from semzip.data.images import load_image, sheet_thumbnail
    from semzip.errors import BadImageError, ResourceLimitError

    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"--originals {root}: no such folder")
    found: list[np.ndarray | None] = []
    for name in names[:SHEET_ITEMS]:
        p = root / name
        try:
            parts = Path(name).parts  # inside the folder by name; a symlinked photo folder is fine
            inside = not Path(name).is_absolute() and ".." not in parts and not Path(name).drive
            found.append(sheet_thumbnail(load_image(p)) if inside and p.is_file() else None)
        except (BadImageError, ResourceLimitError, OSError, ValueError):
            found.append(None)
    n = sum(f is not None for f in found)
    if n == 0:
        raise InvalidInputError(f"--originals {root}: none of the items' names is an image file there (e.g. "
                                f"{names[0]!r}); give the folder the archive was made from")
    if n < len(found) and note is not None:
        missing = next(nm for nm, f in zip(names, found) if f is None)
        note(f"{len(found) - n} of the first {len(found)} items have no readable original in {root} (e.g. "
             f"{missing!r}); {COMPARISON_SHEET} shows the other {n}")
    return found


def write_sheets(out: Path, decoded: Sequence[np.ndarray], names: Sequence[str],
                 originals: Sequence[np.ndarray | None] | None) -> None:
    """contact_sheet.png of the decoded images (at their originals' aspect ratios when those are at hand) and,
    with originals, originals_vs_decoded.png: each original beside its decode, in the same order."""
    from semzip.data.images import comparison_sheet, contact_sheet, save_png

    decoded, names = list(decoded[:SHEET_ITEMS]), list(names[: min(len(decoded), SHEET_ITEMS)])
    aspects = None
    if originals is not None:
        aspects = [(o.shape[1] / o.shape[0]) if o is not None else d.shape[1] / d.shape[0]
                   for o, d in zip(originals, decoded)]
    save_png(contact_sheet(decoded, names, aspects=aspects), out / "contact_sheet.png")
    if originals is not None:
        pairs = [(o, d, n) for o, d, n in zip(originals, decoded, names) if o is not None]
        save_png(comparison_sheet(*zip(*pairs)), out / COMPARISON_SHEET)
