"""Image-text codec (after Murai, Sun, Katto, "LMM-driven semantic image-text coding").

Per image, two streams in one container item: a very low-rate learned-image-codec (LIC) stream, optionally of
a downscaled image (``scale`` is a rate knob), and the image's caption, arithmetic-coded under a causal
language model (``semzip.codecs.text``). A refiner (a diffusion img2img decoder conditioned on the LIC image
and the caption) turns both into the output; offline the identity refiner returns the LIC image itself.

Item payload (one block per item, so every image decodes alone):

    uvarint len(shape) | shape record (LICShape without its per-item model fingerprint)
    uvarint n_streams  | (uvarint len | stream bytes) * n_streams
    caption payload    (to the end of the block; see docs/text-coding.md)
                       + check u16 when the header has ``caption_check: "crc16"`` (all archives written
                       since; older ones have none): CRC-16/CCITT over the language model's fingerprint
                       bytes and the caption's UTF-8, as in the compact caption files

The header records the LIC and language models (name + fingerprint): decoding with others is refused. The
caption check turns a language model that computes different floats here than where the archive was written
(another torch build or CPU: the coder then desynchronises) into an error instead of a wrong caption.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semzip import __version__
from semzip.codecs.base import Encoded
from semzip.errors import CorruptedSectionError, EntropyDecodeError, InvalidInputError, ModelMismatchError
from semzip.format import Container, Header, ModelRef
from semzip.format.varint import decode_uvarint, encode_uvarint


@dataclass
class ItemStreams:
    """One decoded item: the LIC image (before refinement), its caption, and the bytes of each stream."""

    image: np.ndarray
    caption: str
    image_bytes: int
    caption_bytes: int


def pack_item(shape: bytes, streams: Sequence[bytes], caption: bytes) -> bytes:
    """Serialise one item's streams (layout in the module docstring)."""
    out = bytearray(encode_uvarint(len(shape)) + shape + encode_uvarint(len(streams)))
    for s in streams:
        out += encode_uvarint(len(s)) + s
    return bytes(out + caption)


def unpack_item(block: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Inverse of :func:`pack_item`; malformed blocks raise ``CorruptedSectionError``."""
    n, p = decode_uvarint(block, 0, "shape length")
    shape, p = block[p : p + n], p + n
    if len(shape) != n:
        raise CorruptedSectionError("image-text item is truncated")
    count, p = decode_uvarint(block, p, "stream count")
    if count > 16:
        raise CorruptedSectionError(f"image-text item declares {count} streams")
    streams = []
    for _ in range(count):
        n, p = decode_uvarint(block, p, "stream length")
        if p + n > len(block):
            raise CorruptedSectionError("image-text item is truncated")
        streams.append(block[p : p + n])
        p += n
    return shape, streams, block[p:]


class ImageTextCodec:
    """LIC stream + LM-coded caption per image; a refiner renders the final image at decode time."""

    name = "image-text"

    def __init__(self, lic: Any, text_coder: Any, scale: float = 0.25):
        if not 0 < scale <= 1:
            raise InvalidInputError(f"scale must lie in (0, 1], got {scale}")
        self.lic = lic
        self.text = text_coder
        self.scale = float(scale)

    def _models(self) -> list[ModelRef]:
        lm = self.text.lm
        return [ModelRef("lic", self.lic.name, self.lic.fingerprint), ModelRef("language", lm.name, lm.fingerprint)]

    def compress(
        self,
        images: Sequence[np.ndarray],
        captions: Sequence[str],
        names: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
        refiner_params: dict | None = None,
    ) -> Encoded:
        """Code every image with the LIC and its caption with the LM; one block per image."""
        if len(images) != len(captions):
            raise InvalidInputError(f"{len(images)} images but {len(captions)} captions")
        blocks, pixels = [], 0
        for img, cap in zip(images, captions):
            streams, shape = self.lic.compress(img, scale=self.scale)
            shape_bytes = dataclasses.replace(shape, model=None).to_bytes()
            blocks.append((1, pack_item(shape_bytes, streams, self.text.compress(cap) + self._check(cap))))
            pixels += img.shape[0] * img.shape[1]
            if progress is not None:
                progress(1)
        header = Header(
            codec=self.name,
            params={
                "scale": self.scale,
                "pixels_per_item": pixels // max(len(images), 1),
                "caption_prompt": self._prompt_tag(),
                "caption_check": CAPTION_CHECK,
                "refiner": refiner_params or {"spec": "identity"},
            },
            models=self._models(),
            writer=f"semzip {__version__}",
        )
        return Encoded(header, {}, blocks, names)

    def _check(self, caption: str) -> bytes:
        from semzip.format.compact import _crc16, fingerprint_bytes

        return _crc16(fingerprint_bytes(self.text.lm.fingerprint), caption.encode("utf-8")).to_bytes(2, "big")

    def _decode_caption(self, field: bytes, checked: bool, item: int) -> str:
        if not checked:
            return self.text.decompress(field)
        if len(field) < 2:
            raise CorruptedSectionError(f"item {item}: the caption field is too short for its check")
        text = self.text.decompress(field[:-2])
        if self._check(text) != field[-2:]:
            raise EntropyDecodeError(
                f"item {item}: the caption decoded inconsistently (check failed): the item is damaged, or the "
                "language model computes different numbers here than where the archive was written (another "
                "torch build or CPU type)"
            )
        return text

    def _prompt_tag(self) -> str:
        from semzip.models.fingerprint import fingerprint_text

        return fingerprint_text(self.text.prompt)

    def check_models(self, header: Header) -> None:
        """Refuse an archive written with other LIC or language models (or caption prompt) than these."""
        for ref in self._models():
            header.require_model(ref.role, ref.name, ref.fingerprint)
        if header.params.get("caption_prompt") != self._prompt_tag():
            raise ModelMismatchError("the archive's captions were coded with another language-model prompt")

    def decode_items(self, container: Container, items: Sequence[int] | None = None) -> list[ItemStreams]:
        """LIC images and captions of all items (or of ``items``), before refinement."""
        from semzip.models.lic import LICShape

        self.check_models(container.header)
        _check_one_item_per_block(container)
        numbers = range(container.header.n_items) if items is None else items
        checked = _caption_checked(container.header)
        out = []
        for i in numbers:
            blk, _ = container.locate(i)
            shape_bytes, streams, caption = unpack_item(container.block(blk))
            shape = LICShape.from_bytes(shape_bytes)
            out.append(ItemStreams(
                image=self.lic.decompress(streams, shape),
                caption=self._decode_caption(caption, checked, i),
                image_bytes=len(shape_bytes) + sum(len(s) for s in streams),
                caption_bytes=len(caption) - (2 if checked else 0),
            ))
        return out


CAPTION_CHECK = "crc16"


def _caption_checked(header: Header) -> bool:
    mode = header.params.get("caption_check")
    if mode not in (None, CAPTION_CHECK):
        raise CorruptedSectionError(f"unknown caption check {mode!r} (written by a newer semzip?)")
    return mode == CAPTION_CHECK


def _check_one_item_per_block(container: Container) -> None:
    """Every image is its own block; a block claiming more items is corrupt (or a hostile loop: a block that
    declares 2**31 items would otherwise be decoded 2**31 times)."""
    for i, b in enumerate(container.blocks):
        if b.n_items != 1:
            raise CorruptedSectionError(f"{container.label}: image-text block {i} declares {b.n_items} items, not 1")


def stream_split(container: Container) -> list[dict]:
    """Per item: bytes of the image stream, of the caption, and its share of the container's overhead."""
    _check_one_item_per_block(container)
    n = container.header.n_items
    check = 2 if _caption_checked(container.header) else 0
    overhead = container.size - sum(b.length for b in container.blocks) + check * n
    rows = []
    for i in range(len(container.blocks)):
        _, _, caption = unpack_item(container.block(i))
        image = container.blocks[i].length - len(caption)
        rows.append({"image": image, "caption": max(len(caption) - check, 0), "overhead": overhead / n})
    return rows
