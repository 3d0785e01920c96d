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

The header records the LIC and language models (name + fingerprint): decoding with others is refused.
``caption_codec: 2`` (all archives written now): captions are coded by the integer-exact model
(:class:`semzip.codecs.text.IntTextCoder`) and decode on any machine; all captions of an archive are
encoded and decoded in batches. Archives without the field hold codec-1 captions (the float model): there
the caption check turns a machine that computes different floats into an error instead of a wrong caption.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semzip._version import __version__
from semzip.codecs.base import Encoded
from semzip.errors import CorruptedSectionError, EntropyDecodeError, InvalidInputError, ModelMismatchError
from semzip.format import Container, Header, ModelRef, check_container, check_header
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


DEFAULT_LIC = "tiny"
DEFAULT_LANGUAGE = "smollm2-135m"


def caption_coder(language: str = DEFAULT_LANGUAGE, codec: int = 2, kernel: str | None = None,
                  adapter: Any = None) -> Any:
    """The caption coder for text ``codec`` 2 (integer model; ``kernel`` numpy, torch or cuda: same bytes) or
    1 (the float model of older files). ``adapter``: a file made by ``semzip text train`` (codec 2 only),
    folded exactly into the model; decoding needs the same file."""
    if codec == 1:
        if adapter is not None:
            raise InvalidInputError("text codec 1 (the float model) has no adapters; drop the adapter")
        from semzip.codecs.text import TextCoder
        from semzip.models.language import load_language_model

        return TextCoder(load_language_model(language))
    from semzip.codecs.text import IntTextCoder
    from semzip.models.intlm import load_int_language_model

    return IntTextCoder(load_int_language_model(language, kernel=kernel, adapter=adapter))


class ImageTextCodec:
    """LIC stream + LM-coded caption per image; a refiner renders the final image at decode time.

    Build it from model specs with :meth:`create` (what ``compress`` records in the header, so that
    :meth:`from_header` loads the same models), or from model objects (``lic_spec``/``language_spec`` then
    say what to record; without them the header names the models by fingerprint only).
    """

    name = "image-text"
    decodes_to = "images"

    def __init__(self, lic: Any, text_coder: Any, scale: float = 0.25, lic_spec: str | None = None,
                 language_spec: str | None = None):
        if not 0 < scale <= 1:
            raise InvalidInputError(f"scale must lie in (0, 1], got {scale}")
        self.lic = lic
        self.text = text_coder
        self.scale = float(scale)
        self.lic_spec = lic_spec
        self.language_spec = language_spec

    @classmethod
    def create(cls, lic: str = DEFAULT_LIC, language: str = DEFAULT_LANGUAGE, scale: float = 0.25,
               caption_codec: int = 2, kernel: str | None = None, adapter: Any = None) -> ImageTextCodec:
        """The codec with the LIC ``lic`` and a caption coder for ``language`` (see :func:`caption_coder`)."""
        from semzip.models.lic import load_lic

        return cls(load_lic(lic), caption_coder(language, caption_codec, kernel, adapter), scale=scale,
                   lic_spec=lic, language_spec=language)

    @classmethod
    def from_header(cls, header: Header, lic: str | None = None, language: str | None = None,
                    adapter: Any = None, kernel: str | None = None) -> ImageTextCodec:
        """The codec that decodes an archive with this header: its recorded LIC and language model (``lic``,
        ``language`` override them: e.g. a local path to the same weights), caption codec and scale.
        ``adapter``: the caption adapter file the archive names, if any; ``kernel``: see :func:`caption_coder`."""
        check_header(header)
        p = header.params
        return cls.create(lic or p.get("lic_spec", DEFAULT_LIC), language or p.get("language_spec", DEFAULT_LANGUAGE),
                          float(p["scale"]), caption_codec(header), kernel=kernel, adapter=adapter)

    def _models(self) -> list[ModelRef]:
        lm = self.text.lm  # the language model's own fingerprint; an adapter is recorded in the params
        return [ModelRef("lic", self.lic.name, self.lic.fingerprint),
                ModelRef("language", lm.name, getattr(lm, "base_fingerprint", lm.fingerprint))]

    def _adapter_params(self) -> dict:
        adapter = getattr(self.text.lm, "adapter", None)
        if adapter is None:
            return {}
        return {"caption_adapter": adapter.name, "caption_adapter_fingerprint": adapter.fingerprint}

    def _check_adapter(self, header: Header) -> None:
        """A missing, unwanted or different caption adapter is refused by name, before any decoding."""
        want = header.params.get("caption_adapter_fingerprint")
        have = self._adapter_params().get("caption_adapter_fingerprint")
        if want == have:
            return
        name = header.params.get("caption_adapter")
        if have is None:
            raise ModelMismatchError(
                f"the archive's captions were coded with the adapter {name!r} (sha256 {str(want)[:16]}...): "
                "pass that adapter file (--caption-adapter FILE)")
        if want is None:
            raise ModelMismatchError("the archive's captions were coded without an adapter: drop --caption-adapter")
        raise ModelMismatchError(
            f"the archive's captions were coded with the adapter {name!r} (sha256 {str(want)[:16]}...), not with "
            f"{self.text.lm.adapter.path} (sha256 {have[:16]}...)")

    def compress(
        self,
        images: Sequence[np.ndarray],
        captions: Sequence[str],
        names: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
        refiner_params: dict | None = None,
        captioner: str | None = None,
    ) -> Encoded:
        """Code every image with the LIC and its caption with the LM; one block per image. ``progress(1)`` after
        each caption and after each image (two steps per item).

        The header is complete: besides the models' fingerprints it records the specs to load them by (the
        LIC's and language model's, when known), the ``captioner`` that wrote the captions and the decoding
        settings ``refiner_params`` (model paths reduced to names: :func:`semzip.models.registry.portable_spec`)."""
        if len(images) != len(captions):
            raise InvalidInputError(f"{len(images)} images but {len(captions)} captions")
        blocks, pixels = [], 0
        payloads = self.text.compress_many(list(captions), progress)  # all captions in batches, before LIC work
        for img, cap, payload in zip(images, captions, payloads, strict=True):
            streams, shape = self.lic.compress(img, scale=self.scale)
            shape_bytes = dataclasses.replace(shape, model=None).to_bytes()
            blocks.append((1, pack_item(shape_bytes, streams, payload + self._check(cap))))
            pixels += img.shape[0] * img.shape[1]
            if progress is not None:
                progress(1)
        params = {
            "scale": self.scale,
            "pixels_per_item": pixels // max(len(images), 1),
            "caption_prompt": self._prompt_tag(),
            "caption_check": CAPTION_CHECK,
            "refiner": self._refiner_params(refiner_params),
        }
        params["caption_codec"] = self.text.codec_id  # required from format 1.1 (absent in 1.0: codec 1)
        params.update(self._adapter_params())
        params.update(self._spec_params(captioner))
        header = Header(codec=self.name, params=params, models=self._models(), writer=f"semzip {__version__}")
        return Encoded(header, {}, blocks, names)

    @staticmethod
    def _refiner_params(settings: dict | None) -> dict:
        """The decoding settings as recorded: the refiner's spec without local paths."""
        from semzip.models.registry import portable_spec

        settings = dict(settings or {"spec": "identity"})
        if settings.get("spec") is not None:
            settings["spec"] = portable_spec(settings["spec"])
        return settings

    def _spec_params(self, captioner: str | None) -> dict:
        """The header's model specs, as an archive records them (names, never local paths)."""
        from semzip.models.registry import portable_spec

        specs = {"captioner": captioner, "lic_spec": self.lic_spec, "language_spec": self.language_spec}
        return {k: portable_spec(v) for k, v in specs.items() if v is not None}

    def _check(self, caption: str) -> bytes:
        from semzip.format.compact import crc16, fingerprint_bytes

        return crc16(fingerprint_bytes(self.text.lm.fingerprint), caption.encode("utf-8")).to_bytes(2, "big")

    def _decode_captions(self, fields: Sequence[bytes], checked: bool, numbers: Sequence[int],
                         progress: Callable[[int], None] | None = None) -> list[str]:
        """All caption fields decoded in one batched call, each verified against its check."""
        if checked:
            for field, item in zip(fields, numbers, strict=True):
                if len(field) < 2:
                    raise CorruptedSectionError(f"item {item}: the caption field is too short for its check")
        payloads = [f[:-2] if checked else f for f in fields]
        texts = self.text.decompress_many(payloads, progress, errors=True)
        for field, text, item in zip(fields, texts, numbers, strict=True):
            if isinstance(text, Exception):
                raise type(text)(f"item {item}: {text}")
            if checked and self._check(text) != field[-2:]:
                raise EntropyDecodeError(
                    f"item {item}: the caption decoded inconsistently (check failed): the item is damaged"
                    + ("" if self.text.codec_id != 1 else ", or the float language model computes different "
                       "numbers here than where the archive was written (another torch build or CPU type)"))
        return texts

    def _prompt_tag(self) -> str:
        from semzip.models.fingerprint import fingerprint_text

        return fingerprint_text(self.text.prompt)

    def check_models(self, header: Header) -> None:
        """Refuse an archive whose header is invalid (:func:`semzip.format.check_header`) or written with other
        LIC or language models (or caption prompt) than these."""
        check_header(header)
        self._check_adapter(header)
        for ref in self._models():
            header.require_model(ref.role, ref.name, ref.fingerprint)
        if header.params.get("caption_prompt") != self._prompt_tag():
            raise ModelMismatchError("the archive's captions were coded with another language-model prompt")

    def _checked_parts(self, container: Container, items: Sequence[int] | None) -> tuple[list[int], list]:
        """Check the archive against these models, then the numbers and unpacked blocks of ``items`` (all)."""
        check_container(container)
        self.check_models(container.header)
        _check_one_item_per_block(container)
        if caption_codec(container.header) != self.text.codec_id:
            raise ModelMismatchError(
                f"the archive's captions use text codec {caption_codec(container.header)}, this coder is codec "
                f"{self.text.codec_id}")
        numbers = list(range(container.header.n_items) if items is None else items)
        return numbers, [unpack_item(container.block(container.locate(i)[0])) for i in numbers]

    def decode_captions(self, container: Container, items: Sequence[int] | None = None,
                        progress: Callable[[int], None] | None = None) -> list[str]:
        """The captions of all items (or of ``items``), each verified; no image is decoded."""
        numbers, parts = self._checked_parts(container, items)
        return self._decode_captions([p[2] for p in parts], caption_checked(container.header), numbers, progress)

    def decompress(self, container: Container, items: Sequence[int] | None = None,
                   progress: Callable[[int], None] | None = None) -> list[ItemStreams]:
        """LIC images and captions of all items (or of ``items``), before refinement. ``progress(1)`` after each
        caption and after each image (two steps per item)."""
        from semzip.models.lic import LICShape

        numbers, parts = self._checked_parts(container, items)
        checked = caption_checked(container.header)
        captions = self._decode_captions([p[2] for p in parts], checked, numbers, progress)
        out = []
        for (shape_bytes, streams, caption), text in zip(parts, captions, strict=True):
            out.append(ItemStreams(
                image=self.lic.decompress(streams, LICShape.from_bytes(shape_bytes)),
                caption=text,
                image_bytes=len(shape_bytes) + sum(len(s) for s in streams),
                caption_bytes=len(caption) - (2 if checked else 0),
            ))
            if progress is not None:
                progress(1)
        return out


    def decode_integers(self, container: Container) -> tuple[list[str], list[str]]:
        """What decodes exactly on any machine, for every item, in one pass over the blocks: the captions and
        the digests of the LIC's integers up to ``y_hat``."""
        from semzip.models.lic import LICShape

        if not hasattr(self.lic, "decode_integers"):
            raise InvalidInputError(f"{container.label}: its LIC ({self.lic.name}) has no integer decode to digest")
        numbers, parts = self._checked_parts(container, None)
        texts = self._decode_captions([p[2] for p in parts], caption_checked(container.header), numbers)
        lic = [self.lic.decode_integers(streams, LICShape.from_bytes(shape)).digest() for shape, streams, _ in parts]
        return texts, lic


CAPTION_CHECK = "crc16"
CAPTION_CODECS = (1, 2)


def caption_codec(header: Header) -> int:
    """The text codec of an archive's captions: ``caption_codec`` in the header, 1 (float model) if absent."""
    value = header.params.get("caption_codec", 1)
    if isinstance(value, bool) or value not in CAPTION_CODECS:
        raise CorruptedSectionError(f"unknown caption codec {value!r} (written by a newer semzip?)")
    return int(value)


def caption_checked(header: Header) -> bool:
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
    check_container(container)
    _check_one_item_per_block(container)
    n = container.header.n_items
    check = 2 if caption_checked(container.header) else 0
    overhead = container.size - sum(b.length for b in container.blocks) + check * n
    rows = []
    for i in range(len(container.blocks)):
        _, _, caption = unpack_item(container.block(i))
        image = container.blocks[i].length - len(caption)
        rows.append({"image": image, "caption": max(len(caption) - check, 0), "overhead": overhead / n})
    return rows
