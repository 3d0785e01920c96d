"""Image encoders behind one interface: images (and, for CLIP, text) -> L2-normalised embeddings.

Backends: the offline colour-layout ``ThumbnailEncoder`` (in ``thumbnail.py``), OpenCLIP
(``OpenClipEncoder``) and transformers CLIP (``HFClipEncoder``). torch, open_clip and transformers are
imported inside the backends' methods only, so importing this module stays cheap.

Every encoder carries ``space``, the identifier of its embedding space (model + weights tag +
preprocessing): a dictionary learnt on one space is only valid for that space, and a generator must be
conditioned on the same one. ``fingerprint`` is a short hash of the weights (see ``fingerprint.py``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from semzip.errors import InvalidInputError, MissingModelError, ModelMismatchError
from semzip.models.torch_utils import dtype_kwarg, hub_folder, hub_offline, resolve_device, resolve_dtype

Progress = Callable[[int], None]
"""Progress callback: called with the number of items just finished (the project's ``advance(n)``)."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (computed in float64, returned as float32; zero rows stay zero)."""
    x64 = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x64, axis=1, keepdims=True)
    return (x64 / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class ImageEncoder(ABC):
    """Maps images to L2-normalised float32 embeddings of one named embedding space."""

    name: str
    """Registry name that loads this encoder again (e.g. ``"thumbnail"``, ``"hf:/models/clip"``)."""
    space: str
    """Embedding-space identifier: model + weights tag + preprocessing."""
    dim: int
    """Embedding dimension."""
    batch_size: int = 32
    has_text_tower: bool = False
    """Whether :meth:`encode_text` works (CLIP encoders): text queries need one."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Short hex hash of the weights (recorded in archive headers)."""

    @abstractmethod
    def _encode_image_batch(self, images: list[np.ndarray]) -> np.ndarray:
        """Raw (not yet normalised) features of a batch of RGB uint8 arrays, shape (len(images), dim)."""

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings (n, dim) in the same space as the images."""
        raise InvalidInputError(f"the {self.name} encoder has no text tower")

    def encode_images(
        self,
        images: Sequence[Any],
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Embed images (HxWx3 uint8 arrays or PIL images) as an (n, dim) float32 L2-normalised array."""
        from semzip.data.images import as_rgb_array

        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise InvalidInputError(f"batch_size must be positive, got {batch_size}")
        items = list(images)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(items), bs):
            chunk = [
                as_rgb_array(im, what=f"image {start + i}") for i, im in enumerate(items[start : start + bs])
            ]
            feats = np.asarray(self._encode_image_batch(chunk))
            if feats.shape != (len(chunk), self.dim):
                raise RuntimeError(
                    f"{self.name} returned shape {feats.shape}, expected {(len(chunk), self.dim)}"
                )
            out[start : start + len(chunk)] = l2_normalize(feats)
            if progress is not None:
                progress(len(chunk))
        return out

    def info(self) -> dict[str, Any]:
        """The identity to record in an archive header: name, space, dim, fingerprint."""
        return {"name": self.name, "space": self.space, "dim": int(self.dim), "fingerprint": self.fingerprint}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, space={self.space!r}, dim={self.dim})"


# ----------------------------------------------------------------------------------------------------------
# transformers CLIP


class HFClipEncoder(ImageEncoder):
    """CLIP through transformers: ``CLIPModel`` (image + text) or ``CLIPVisionModelWithProjection`` (image only).

    Loads from a local folder (``save_pretrained`` layout) or, with ``allow_download=True``, a hub id.
    Features are ``get_image_features`` / ``get_text_features`` (the projected embeddings), L2-normalised.
    """


    def __init__(
        self,
        name_or_path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = "fp32",
        batch_size: int = 32,
        allow_download: bool = False,
    ) -> None:
        self.path = str(name_or_path)
        self.batch_size = batch_size
        self.allow_download = allow_download
        local = Path(self.path).expanduser()
        src = hub_folder(
            self.path, allow_download, "CLIP model",
            "Pass a local folder saved with save_pretrained (config.json + model.safetensors + processor files) "
            "or a hub id such as 'openai/clip-vit-base-patch32' that is in the local hub cache (HF_HOME)",
        )
        import torch
        import transformers

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self._src = src
        kw = {"local_files_only": not allow_download}
        try:
            with hub_offline(not allow_download):
                config, model = self._load_model(transformers, src, kw)
                self.image_processor = _clip_image_processor(transformers).from_pretrained(src, **kw)
                self.tokenizer = (
                    transformers.AutoTokenizer.from_pretrained(src, **kw) if self.has_text_tower else None
                )
        except InvalidInputError:
            raise
        except (OSError, ValueError) as exc:
            raise MissingModelError(
                f"cannot load CLIP model from {self.path}: {exc}. Check the folder holds config.json, the "
                "weights and the processor/tokenizer files (save_pretrained of the model and its processor)."
            ) from None
        self.model = model.to(self.device).eval()
        self._torch = torch
        self.dim = int(config.projection_dim)
        # archives record the folder's name (found again through the model search path) or the hub id
        self.name = f"hf:{local.name}" if local.is_dir() else f"hf:{self.path}"
        proc = self.image_processor
        size = proc.crop_size if getattr(proc, "do_center_crop", False) and proc.crop_size else proc.size
        tag = Path(self.path).name if local.is_dir() else self.path
        self.space = f"hf-clip:{tag}/{self.model_type}/{_size_tag(size)}"
        self._fingerprint: str | None = None

    def _load_model(self, transformers: Any, src: str, kw: dict[str, Any]) -> tuple[Any, Any]:
        config = transformers.AutoConfig.from_pretrained(src, **kw)
        model_type = getattr(config, "model_type", "")
        self.model_type = model_type
        if model_type == "clip":
            cls, self.has_text_tower = transformers.CLIPModel, True
        elif model_type == "clip_vision_model":
            cls, self.has_text_tower = transformers.CLIPVisionModelWithProjection, False
        else:
            raise InvalidInputError(
                f"{self.path} holds a {model_type!r} model; expected a CLIP model (model_type 'clip' "
                "or 'clip_vision_model')"
            )
        return config, cls.from_pretrained(src, **dtype_kwarg(transformers, self.dtype), **kw)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from semzip.models.fingerprint import fingerprint_loaded

            self._fingerprint = fingerprint_loaded(self._src, self.model)
        return self._fingerprint

    def _encode_image_batch(self, images: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            pixels = pixels.to(self.device, dtype=self.dtype)
            if self.has_text_tower:
                feats = self.model.get_image_features(pixel_values=pixels)
            else:
                feats = self.model(pixel_values=pixels).image_embeds
            feats = _as_tensor(feats, "image_embeds")
        return feats.float().cpu().numpy()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if not self.has_text_tower:
            raise InvalidInputError(
                f"{self.path} is an image-only CLIP vision model; load a full CLIPModel for text concepts"
            )
        texts = _check_texts(texts)
        torch = self._torch
        out = []
        for start in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(
                texts[start : start + self.batch_size],
                padding="max_length",
                truncation=True,
                max_length=self.model.config.text_config.max_position_embeddings,
                return_tensors="pt",
            )
            with torch.inference_mode():
                feats = self.model.get_text_features(
                    input_ids=tok["input_ids"].to(self.device),
                    attention_mask=tok["attention_mask"].to(self.device),
                )
                feats = _as_tensor(feats, "text_embeds")
            out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))


def _looks_like_path(s: str) -> bool:
    return s.startswith((".", "/", "~")) or os.sep in s or Path(s).exists()


def _as_tensor(feats: Any, field: str) -> Any:
    """transformers 5 may return a model output instead of a tensor from ``get_*_features``."""
    if hasattr(feats, "shape"):
        return feats
    for key in (field, "pooler_output"):
        val = getattr(feats, key, None)
        if val is not None:
            return val
    raise RuntimeError(f"unexpected CLIP output type {type(feats).__name__}")


def _size_tag(size: Any) -> str:
    """``"224x224"`` (crop) or ``"s224"`` (shortest edge) from a processor's size dict or SizeDict."""
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    if get("height") and get("width"):
        return f"{get('width')}x{get('height')}"
    if get("shortest_edge"):
        return f"s{get('shortest_edge')}"
    return str(size)


def _clip_image_processor(transformers: Any) -> Any:
    """transformers' CLIP image processor class; the PIL one when torchvision is absent (it is, here)."""
    import importlib.util

    pil = getattr(transformers, "CLIPImageProcessorPil", None)
    if pil is not None and importlib.util.find_spec("torchvision") is None:
        return pil
    return transformers.CLIPImageProcessor


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError("encode_text needs a non-empty list of strings")
    return texts


# ----------------------------------------------------------------------------------------------------------
# OpenCLIP


def split_weights_tag(pretrained: str) -> tuple[str, str | None]:
    """``"<tag>@<file>"`` -> (file, tag): a local copy of published weights that keeps their tag (and so their
    embedding space); anything else -> (pretrained, None). An existing file whose name holds ``@`` is a file."""
    tag, sep, path = str(pretrained).partition("@")
    if not sep or not tag or not path or Path(str(pretrained)).expanduser().exists() or "/" in tag:
        return str(pretrained), None
    return path, tag


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """open_clip logs download failures and random-init warnings on the root logger, which Python prints to
    stderr when nothing is configured: the caller turns them into one error of its own."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(level)

OPENCLIP_DEFAULT_MODEL = "ViT-H-14"
OPENCLIP_DEFAULT_PRETRAINED = "laion2b_s32b_b79k"
"""The image encoder SD-2.1-unCLIP is conditioned on (OpenCLIP ViT-H/14, LAION-2B)."""


class OpenClipEncoder(ImageEncoder):
    """OpenCLIP (``open_clip_torch``) image and text towers.

    ``pretrained`` is an OpenCLIP tag (looked up in the local cache only, unless ``allow_download``) or a
    local checkpoint file. The default pair is the conditioning space of SD-2.1-unCLIP.
    """

    has_text_tower = True

    def __init__(
        self,
        model_name: str = OPENCLIP_DEFAULT_MODEL,
        pretrained: str | os.PathLike = OPENCLIP_DEFAULT_PRETRAINED,
        device: str | None = None,
        precision: str = "fp32",
        batch_size: int = 32,
        allow_download: bool = False,
        cache_dir: str | os.PathLike | None = None,
        weights_tag: str | None = None,
    ) -> None:
        try:
            import open_clip
        except Exception as exc:  # noqa: BLE001 - a torchvision that does not match torch raises RuntimeError
            raise MissingModelError(
                "the OpenCLIP backend needs open_clip_torch beside a torchvision that matches torch (pip install "
                f"'semzip[clip]'): {type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"
            ) from None
        import torch

        self.model_name = model_name
        self.pretrained = str(pretrained)
        self.batch_size = batch_size
        self.device = resolve_device(device)
        precision = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(precision, precision)
        if precision not in ("fp32", "fp16", "bf16"):
            raise InvalidInputError(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
        if precision == "fp16" and not self.device.startswith("cuda"):
            precision = "fp32"
        self.precision = precision
        pretrained_arg, declared_tag = split_weights_tag(self.pretrained)
        local_ckpt = Path(pretrained_arg).expanduser()
        self._checkpoint: Path | None = local_ckpt if local_ckpt.is_file() else None
        if self._checkpoint is None and (declared_tag is not None or _looks_like_path(pretrained_arg)):
            raise MissingModelError(f"OpenCLIP checkpoint file not found: {pretrained_arg}")
        known = (
            open_clip.list_pretrained_tags_by_model(model_name)
            if hasattr(open_clip, "list_pretrained_tags_by_model")
            else None
        )
        if model_name not in open_clip.list_models():
            raise InvalidInputError(
                f"OpenCLIP has no model {model_name!r}; e.g. ViT-H-14, ViT-bigG-14, ViT-B-32 (open_clip.list_models())"
            )
        tag = declared_tag if declared_tag is not None else (None if self._checkpoint else self.pretrained)
        if tag is not None and weights_tag is not None and weights_tag != tag:
            raise InvalidInputError(f"two weights tags given for {model_name}: {tag!r} and weights_tag={weights_tag!r}")
        if tag is not None and known is not None and tag not in known:
            raise InvalidInputError(f"OpenCLIP has no pretrained tag {tag!r} for {model_name}; known: {sorted(known)}")
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        if self._checkpoint is None and not allow_download and self._cached_checkpoint() is None:
            raise MissingModelError(
                f"OpenCLIP weights {model_name}/{self.pretrained} are not in the local cache "
                f"({self.cache_dir or 'HF_HOME'}); pass a local checkpoint (open_clip:{model_name}/{self.pretrained}"
                "@/path/to/file declares its tag), point HF_HOME or cache_dir at a cache that holds them, or "
                "allow the download once (--allow-download)"
            )
        try:
            with hub_offline(not allow_download), _quiet_root_logger():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name,
                    pretrained=str(self._checkpoint) if self._checkpoint else self.pretrained,
                    precision=precision,
                    device=self.device,
                    cache_dir=self.cache_dir,
                )
        except RuntimeError as exc:
            msg = str(exc).strip()
            first = msg.splitlines()[0][:200] if msg else type(exc).__name__
            if "loading state_dict" in msg or "size mismatch" in msg or "Missing key" in msg:
                detail = next((ln.strip() for ln in msg.splitlines()[1:] if ln.strip()), first)[:200]
                raise ModelMismatchError(
                    f"{self._checkpoint or self.pretrained} is not an OpenCLIP {model_name} checkpoint ({detail})"
                ) from None
            if "download" in msg.lower():
                raise MissingModelError(
                    f"OpenCLIP weights {model_name}/{self.pretrained} are not available locally ({first}); pass a "
                    "local checkpoint file, or allow the download (--allow-download)"
                ) from None
            raise
        except Exception as exc:  # hub errors when offline: LocalEntryNotFoundError, OSError, ...  # noqa: BLE001
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise MissingModelError(
                f"OpenCLIP weights {model_name}/{self.pretrained} cannot be loaded ({type(exc).__name__}: {first}). "
                "Pass a local checkpoint file, point HF_HOME (or cache_dir) to a cache that holds them, or allow "
                "the download once (--allow-download)."
            ) from None
        if weights_tag is None:
            weights_tag = tag
        self.model = model.eval()
        self._input_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self._torch = torch
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["a"]).to(self.device))
        self.dim = int(probe.shape[-1])
        # archives record the checkpoint's file name (found again through the model search path), or the tag
        if self._checkpoint is not None:
            portable = self._checkpoint.name if declared_tag is None else f"{declared_tag}@{self._checkpoint.name}"
        else:
            portable = self.pretrained
        self.name = f"open_clip:{model_name}/{portable}"
        # A local copy of a published checkpoint declares its tag ("<tag>@<file>" or weights_tag=...) so that its
        # space matches generators conditioned on that tag; otherwise the file name is the tag.
        if weights_tag is None:
            weights_tag = self._checkpoint.name if self._checkpoint else self.pretrained
        self.space = f"open_clip:{model_name}/{weights_tag}"
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from semzip.models.fingerprint import fingerprint_path, fingerprint_state_dict

            path = self._checkpoint or self._cached_checkpoint()
            if path is not None:
                self._fingerprint = fingerprint_path(path)
            else:  # depends on precision: the tensors as loaded
                self._fingerprint = fingerprint_state_dict(self.model.state_dict())
        return self._fingerprint

    def _cached_checkpoint(self) -> Path | None:
        """The checkpoint file of a pretrained tag in the local cache (no download: hub access is off)."""
        try:
            from open_clip.pretrained import download_pretrained, get_pretrained_cfg

            cfg = get_pretrained_cfg(self.model_name, self.pretrained)
            with hub_offline(True), _quiet_root_logger():
                path = download_pretrained(cfg, cache_dir=self.cache_dir) if cfg else ""
        except Exception:  # noqa: BLE001
            return None
        return Path(path) if path and Path(path).is_file() else None

    def _encode_image_batch(self, images: list[np.ndarray]) -> np.ndarray:
        from PIL import Image

        torch = self._torch
        batch = torch.stack([self.preprocess(Image.fromarray(a)) for a in images])
        with torch.inference_mode():
            feats = self.model.encode_image(batch.to(self.device, dtype=self._input_dtype))
        return feats.float().cpu().numpy()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        torch = self._torch
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
            with torch.inference_mode():
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return l2_normalize(np.concatenate(out))
