"""The Archive: one archive opened and checked once, and everything a reader asks of it.

``open_archive(path)`` reads the header and section table, checks them against the codec's schema and
builds nothing more until asked: the codec (from the header, :meth:`from_header`) is made on first use and
kept, so describing, decoding embeddings or images, searching and verifying all share one open file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from semzip.archive import decoders, render
from semzip.archive.digest import embeddings_digest, image_text_digest
from semzip.codecs.base import get_codec
from semzip.errors import InvalidInputError, SemzipError
from semzip.format import Container, Limits, SectionType, check_container

PathLike = str | os.PathLike
Rows = list[tuple[str, bool, str]]


class Archive:
    """An opened archive: its header, checked container and codec. Use it as a context manager (the file
    is closed on exit), or call :meth:`close`.

    ``codec_options`` go to the codec's ``from_header`` (image-text: ``lic``, ``language``, ``adapter``,
    ``kernel``); archives that decode to embeddings take none. ``codec``: a codec already built for this
    archive (its models loaded), used instead of one from the header; decoding still checks that its models
    are the ones the header records.
    """

    def __init__(self, container: Container, path: PathLike | None = None, codec: Any = None, **codec_options: Any):
        self.container = container
        self.path = str(path) if path is not None else container.label
        self.codec_options = {k: v for k, v in codec_options.items() if v is not None}
        self._codec = codec

    # ---------------------------------------------------------------------------------------- the file
    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Archive {self.path}: {self.codec_name}, {self.n_items} items>"

    @property
    def header(self):
        return self.container.header

    @property
    def codec_name(self) -> str:
        return self.header.codec

    @property
    def n_items(self) -> int:
        return self.header.n_items

    @property
    def names(self) -> Sequence[str]:
        """Item names, checked (file-name safe, distinct); generated ``item_00000``... when none are stored."""
        return self.container.names

    @property
    def decodes_to(self) -> str:
        """``"embeddings"`` (sq, collection) or ``"images"`` (image-text): what the archive's items decode to."""
        return get_codec(self.codec_name).decodes_to

    @property
    def codec(self):
        """The codec that decodes this archive, built from its header once (image-text: loads its models)."""
        if self._codec is None:
            self._check_options()
            self._codec = get_codec(self.codec_name).from_header(self.header, **self.codec_options)
        return self._codec

    def _check_options(self) -> None:
        if self.codec_options and self.decodes_to == "embeddings":
            raise InvalidInputError(f"model settings ({', '.join(sorted(self.codec_options))}) do not apply to a "
                                    f"{self.codec_name} archive (it decodes to embeddings; no model runs)")

    def numbers(self, items: Sequence[str | int] | None) -> list[int] | None:
        """Item numbers of ``items`` (names or numbers, range-checked); None stays None (all items)."""
        if items is None:
            return None
        out = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise InvalidInputError(f"items are names or numbers, got {item!r}")
            if isinstance(item, int):
                self.container.locate(item)  # range check
                out.append(item)
            else:
                out.append(self.container.item_index(item))
        return out

    # ---------------------------------------------------------------------------------------- reading
    def describe(self) -> dict:
        """Header, per-section sizes and real bits per item (the whole file counted)."""
        c, h = self.container, self.header
        sections = [{"name": "header", "type": "HEADER", "bytes": c.header_size}]
        sections += [{"name": s.name, "type": SectionType(s.type).name, "bytes": s.record_size} for s in c.sections]
        d = {
            "format": "{}.{}".format(*c.format_version),
            "codec": h.codec,
            "params": h.params,
            "models": [m.to_json() for m in h.models],
            "n_items": h.n_items,
            "writer": h.writer,
            "bytes": c.size,
            "sections": sections,
            "bits_per_item": 8 * c.size / h.n_items if h.n_items else None,
        }
        pixels = h.params.get("pixels_per_item")  # a checked integer >= 0 (0: unknown)
        d["bits_per_pixel"] = d["bits_per_item"] / pixels if pixels and h.n_items else None
        return d

    def require(self, kind: str) -> None:
        """Refuse, in one line, a request for ``kind`` (``"embeddings"`` or ``"images"``) when this archive's
        items decode to the other."""
        if self.decodes_to == kind:
            return
        if kind == "embeddings":
            raise InvalidInputError(f"{self.codec_name} archives hold images and captions, not embeddings: decode "
                                    "them to a folder (-o DIR)")
        raise InvalidInputError(f"{self.path} is a {self.codec_name!r} archive: it decodes to embeddings, not to "
                                "images and captions")

    def embeddings(self, items: Sequence[str | int] | None = None) -> np.ndarray:
        """Decoded float32 embeddings of all items, or of ``items`` (names or numbers: only their blocks are
        read). The item names are checked even when only embeddings are wanted."""
        self.require("embeddings")
        _ = self.names
        return self.codec.decompress(self.container, self.numbers(items))

    def items(self, items: Sequence[str | int] | None = None,
              progress: Callable[[int], None] | None = None) -> list:
        """Image-text: each item's LIC image and caption, before refinement (:class:`ItemStreams`)."""
        self.require("images")
        return self.codec.decompress(self.container, self.numbers(items), progress)

    def captions(self, items: Sequence[str | int] | None = None) -> list[str]:
        """Image-text: the captions of all items (or ``items``), without decoding any image."""
        self.require("images")
        return self.codec.decode_captions(self.container, self.numbers(items))

    def atoms(self) -> np.ndarray:
        """Collection: the decoded dictionary, one unit atom per row."""
        if not hasattr(get_codec(self.codec_name), "load_state"):  # asked of the class: no model loads
            raise InvalidInputError(f"{self.path} is a {self.codec_name!r} archive: only collection archives "
                                    "have atoms")
        return self.codec.load_state(self.container)[0]

    def search_index(self):
        """Collection: a :class:`semzip.query.search.SearchIndex` over the sparse codes (nothing decoded)."""
        from semzip.query.search import SearchIndex

        return SearchIndex.from_container(self.container, self.path)

    def digest(self) -> dict:
        """SHA-256 digests of what the archive decodes to before any float synthesis
        (:mod:`semzip.archive.digest`): the same on two machines means the same decode."""
        if self.decodes_to == "images":
            return image_text_digest(self.container, self.codec)
        return embeddings_digest(self.container, self.codec)

    # ---------------------------------------------------------------------------------------- models
    def encoder(self, device: str | None = None, why: str = "concepts would be embedded in another space"):
        """The image encoder the archive records (same weights, or refused), on ``device``."""
        ref = self.header.model("encoder")
        if ref is None:
            raise InvalidInputError("the archive records no encoder: concepts cannot be embedded in its space")
        return decoders.load_recorded_encoder(ref, device, why)

    def embed_concepts(self, concepts: Sequence[str], device: str | None = None) -> np.ndarray:
        """Embed concepts in the archive's space: an existing image file path is an image, anything else text
        (refused before any work when the encoder has no text tower: :func:`decoders.need_text_tower`)."""
        from semzip.data.images import IMAGE_EXTENSIONS, load_image

        enc = self.encoder(device)
        is_image = [Path(c).suffix.lower() in IMAGE_EXTENSIONS and Path(c).is_file() for c in concepts]
        if not all(is_image):
            decoders.need_text_tower(enc)
        rows = [enc.encode_images([load_image(Path(c))])[0] if image else enc.encode_text([c])[0]
                for c, image in zip(concepts, is_image)]
        return np.stack(rows)

    def generator(self, spec: str | None = None, device: str | None = None):
        """The generator that renders this archive's embeddings (:func:`decoders.space_generator`)."""
        return decoders.space_generator(self.header.params.get("space", "unknown"), spec, device)

    # ---------------------------------------------------------------------------------------- images
    def _plan(self, out_dir: PathLike, items, force: bool, originals: PathLike | None,
              note: Callable[[str], None] | None) -> render.FolderPlan:
        every = list(range(self.n_items)) if items is None else self.numbers(items)
        names = [self.names[i] for i in every]
        return render.FolderPlan(Path(out_dir), self.path, every, render.item_files(self.names, every), names,
                                 force=force, originals=render.load_originals(originals, names, note))

    def render(self, out_dir: PathLike, items: Sequence[str | int] | None = None, generator: str | None = None,
               seed: int = 0, steps: int | None = None, guidance: float | None = None,
               size: tuple[int, int] | None = None, progress: Callable[[int], None] | None = None,
               batch_size: int = 8, force: bool = False, device: str | None = None,
               originals: PathLike | None = None, note: Callable[[str], None] | None = None) -> list[Path]:
        """Embedding archives: render the decoded embeddings with a generator to PNGs and sheets in
        ``out_dir`` (see :func:`semzip.api.decompress_images`)."""
        self.require("embeddings")
        plan = self._plan(out_dir, items, force, originals, note)
        gen = self.generator(generator, device)  # a missing generator or a bad setting is refused before
        settings = gen.params(seed=seed, steps=steps, guidance=guidance, size=size)  # any decoding
        x = self.embeddings(plan.numbers if items is not None else None)
        return render.render_embeddings(plan, x, gen, settings, seed=seed, steps=steps, guidance=guidance,
                                        size=size, batch_size=batch_size if items is None else 1,
                                        progress=progress)

    def refine(self, out_dir: PathLike, items: Sequence[str | int] | None = None, refiner: str | None = None,
               seed: int | None = None, steps: int | None = None, strength: float | None = None,
               guidance: float | None = None, progress: Callable[[int], None] | None = None,
               force: bool = False, device: str | None = None, originals: PathLike | None = None,
               note: Callable[[str], None] | None = None) -> list[Path]:
        """Image-text archives: decode LIC images and captions, refine them (settings not given are the
        header's), write PNGs, captions.txt and sheets (see :func:`semzip.api.decompress_image_text`)."""
        from semzip.models.registry import load_refiner

        self.require("images")
        s = decoders.refiner_settings(self.header.params.get("refiner"), refiner, seed, steps, strength, guidance)
        ref = load_refiner(s["spec"], **decoders.device_kw("refiner", s["spec"], device))
        recorded = ref.params(seed=s["seed"], steps=s["steps"], strength=s["strength"], guidance=s["guidance"])
        plan = self._plan(out_dir, items, force, originals, note)
        decoded = self.items(plan.numbers if items is not None else None, progress)  # models load, then decode
        return render.refine_items(plan, decoded, ref, s, recorded, progress)

    # ---------------------------------------------------------------------------------------- checking
    def decode_all(self, device: str | None = None) -> int:
        """Decode every item as ``decompress`` does, writing nothing that stays; returns the item count.
        ``device``: where an image-text archive's refiner runs; embeddings decode where no model runs."""
        if self.decodes_to == "images":
            with tempfile.TemporaryDirectory(prefix="semzip-verify-") as tmp:
                return len(self.refine(Path(tmp) / "out", device=device))
        self._no_device_for_embeddings(device)
        return len(self.embeddings())

    def _no_device_for_embeddings(self, device: str | None) -> None:
        if device is not None and self.decodes_to != "images":
            raise InvalidInputError(f"--device does not apply to verifying a {self.codec_name} archive (it decodes "
                                    "to embeddings; no model runs)")

    def verify(self, deep: bool = False, device: str | None = None) -> Rows:
        """Every section's and block's CRC, then the header's schema and the item names; with ``deep`` every
        item decoded (:meth:`decode_all`). Rows of (what, ok, message): damage is reported, not raised."""
        self._check_options()  # a setting for another kind of archive is a mistake, not damage
        if device is not None:  # an offline refiner on another device is refused here, not reported as damage
            self._no_device_for_embeddings(device)
            decoders.device_kw("refiner", (self.header.params.get("refiner") or {}).get("spec") or "identity", device)
        c = self.container
        rows = c.verify()
        if all(ok for _, ok, _ in rows):
            for what, check, fine in (
                    ("schema", lambda: check_container(c), f"{self.codec_name} {c.format_version[0]}.{c.format_version[1]}"),
                    ("item names", lambda: c.names, f"{self.n_items} names")):
                try:
                    check()
                    rows.append((what, True, fine))
                except SemzipError as exc:
                    rows.append((what, False, str(exc)))
        if deep and all(ok for _, ok, _ in rows):
            try:
                rows.append(("content", True, f"all {self.decode_all(device)} items decode"))
            except SemzipError as exc:
                rows.append(("content", False, str(exc)))
        return rows


def open_archive(path: PathLike, check: bool = True, limits: Limits | None = None, **codec_options: Any) -> Archive:
    """Open an archive once: its header and sections parsed and (unless ``check`` is False: ``verify``
    reports a schema problem instead of raising it) checked against its codec's schema before anything else.
    ``codec_options``: see :class:`Archive`."""
    c = Container.open(path, limits)
    try:
        if check:
            check_container(c)
        return Archive(c, path, **codec_options)
    except BaseException:
        c.close()
        raise
