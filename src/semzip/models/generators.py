"""Image generators: embeddings of one named space -> images.

``ThumbnailGenerator`` is the offline default (renders thumbnail embeddings; no randomness).
``StableUnCLIPGenerator`` (SD-2.1-unCLIP, OpenCLIP ViT-H/14 space) and ``KandinskyV22Generator``
(Kandinsky 2.2 decoder, OpenCLIP ViT-bigG/14 space) wrap diffusers pipelines loaded from local folders.

Reproducibility: the noise of item ``i`` is drawn from a CPU ``torch.Generator`` seeded with ``seed + i``,
so an item's pixels do not depend on how the batch was split; ``params()`` returns the settings to store
in an archive header (seed, scheduler, steps, guidance, size). Diffusion output is reproducible only on the
same hardware and library versions.

Embedding scale: the codecs hand over L2-normalised embeddings, but both diffusion decoders were trained on
the raw (un-normalised) ``image_embeds`` of ``CLIPVisionModelWithProjection``. The generators multiply the
unit vectors by ``embed_norm``; by default it is derived from the pipeline's own statistics of those
embeddings: sqrt(||mean||^2 + ||std||^2) (the expected norm under the per-dimension mean/std that
SD-unCLIP's ``image_normalizer`` and Kandinsky's prior (``clip_mean``/``clip_std``) store).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from semzip.errors import InvalidInputError, MissingModelError
from semzip.models.thumbnail import DEFAULT_GRID, ThumbnailDecoder, check_size
from semzip.models.torch_utils import DiffusersRuntime

Progress = Callable[[int], None]

STABLE_UNCLIP_SPACE = "open_clip:ViT-H-14/laion2b_s32b_b79k"
"""SD-2.1-unCLIP is conditioned on OpenCLIP ViT-H/14 (LAION-2B) image embeddings (1024-d)."""
KANDINSKY22_SPACE = "open_clip:ViT-bigG-14/laion2b_s39b_b160k"
"""Kandinsky 2.2 is conditioned on OpenCLIP ViT-bigG/14 (LAION-2B, 39B samples) image embeddings (1280-d)."""


class ImageGenerator(ABC):
    """Renders images from embeddings of the space ``space``."""

    name: str
    space: str
    dim: int

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Short hex hash of the weights (recorded in archive headers)."""

    @abstractmethod
    def generate(
        self,
        embeddings: np.ndarray,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        size: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> list[np.ndarray]:
        """One RGB uint8 (H, W, 3) image per embedding row."""

    @abstractmethod
    def params(
        self,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """The settings ``generate`` uses with these arguments, as a JSON-able dict for archive headers."""

    def _check(self, embeddings: np.ndarray) -> np.ndarray:
        v = np.asarray(embeddings)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise InvalidInputError(f"{self.name} needs embeddings of shape (n, {self.dim}), got {v.shape}")
        if not np.isfinite(v).all():
            raise InvalidInputError("embeddings contain NaN or infinite values")
        return v.astype(np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, space={self.space!r})"


class ThumbnailGenerator(ImageGenerator):
    """The offline default: renders colour-layout thumbnail embeddings (deterministic; ignores seed)."""

    def __init__(self, grid: int = DEFAULT_GRID, size: tuple[int, int] = (256, 256)) -> None:
        self.decoder = ThumbnailDecoder(grid=grid, size=size)
        self.dim = self.decoder.dim
        self.space = self.decoder.space
        self.name = "thumbnail" if self.decoder.grid == DEFAULT_GRID else f"thumbnail:{self.decoder.grid}"

    @property
    def fingerprint(self) -> str:
        from semzip.models.thumbnail import ThumbnailEncoder

        return ThumbnailEncoder(self.decoder.grid).fingerprint

    def generate(self, embeddings, seed=0, steps=None, guidance=None, size=None, progress=None):
        v = self._check(embeddings)
        out = self.decoder.decode(v, size=size)
        if progress is not None:
            progress(len(out))
        return out

    def params(self, seed=0, steps=None, guidance=None, size=None):
        w, h = check_size(size) if size is not None else self.decoder.size
        return {"generator": self.name, "space": self.space, "size": [w, h], "resample": "bicubic"}


# ----------------------------------------------------------------------------------------------------------
# diffusers backends


class _DiffusersGenerator(DiffusersRuntime, ImageGenerator):
    default_steps = 25
    default_guidance = 4.0
    default_size = (512, 512)
    size_multiple = 8

    def _load(self, pipeline: str, path: str | os.PathLike, what: str, hint: str, device: str | None, dtype: Any,
              batch_size: int, size: Any, embed_norm: Any, allow_download: bool) -> None:
        """Check the settings, then load the diffusers pipeline class ``pipeline`` into ``self.pipe``."""
        from semzip.models.torch_utils import load_diffusers_pipeline

        self._init_runtime(device, dtype, batch_size)
        self.size = check_size(size) if size is not None else None
        self._embed_norm = None if embed_norm is None else float(embed_norm)
        self.pipe, self.path = load_diffusers_pipeline(
            pipeline, path, what, f"Save {hint} with save_pretrained on a machine with access, or pass a hub id "
            "with --allow-download.", self.dtype, self.device, allow_download,
        )

    def _resolve(self, steps, guidance, size) -> tuple[int, float, tuple[int, int]]:
        steps = int(self.default_steps if steps is None else steps)
        if steps < 1:
            raise InvalidInputError(f"steps must be at least 1, got {steps}")
        guidance = float(self.default_guidance if guidance is None else guidance)
        w, h = check_size(size) if size is not None else (self.size or self.default_size)
        if w % self.size_multiple or h % self.size_multiple:
            raise InvalidInputError(f"{self.name} needs width and height divisible by {self.size_multiple}")
        return steps, guidance, (w, h)

    def params(self, seed=0, steps=None, guidance=None, size=None):
        steps, guidance, (w, h) = self._resolve(steps, guidance, size)
        return {
            "generator": self.name,
            "space": self.space,
            **self._seeding_params(seed),
            "steps": steps,
            "guidance": guidance,
            "size": [w, h],
            "embed_norm": self.embed_norm,
            "dtype": self.dtype_name,
            **self._extra_params(),
        }

    def _extra_params(self) -> dict[str, Any]:
        return {}

    @property
    def embed_norm(self) -> float:
        if self._embed_norm is None:
            self._embed_norm = self._default_embed_norm()
        return self._embed_norm

    def _default_embed_norm(self) -> float:
        raise NotImplementedError

    def generate(self, embeddings, seed=0, steps=None, guidance=None, size=None, progress=None):
        import torch

        v = self._check(embeddings)
        steps, guidance, (w, h) = self._resolve(steps, guidance, size)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.where(norms > 0, norms, 1.0) * self.embed_norm
        out: list[np.ndarray] = []
        for start in range(0, len(v), self.batch_size):
            chunk = torch.from_numpy(v[start : start + self.batch_size]).to(self.device, dtype=self.dtype)
            gens = self._noise(seed, start, start + len(chunk))
            with torch.inference_mode():
                images = self._call(chunk, gens, steps, guidance, w, h)
            images = np.asarray(images, dtype=np.float32)
            out.extend(np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8))
            if progress is not None:
                progress(len(chunk))
        return out

    def _call(self, embeds, generators, steps, guidance, width, height) -> np.ndarray:
        return self._run_pipeline(generators, steps, guidance, image_embeds=embeds, width=width, height=height,
                                  **self._call_kwargs(embeds))

    def _call_kwargs(self, embeds: Any) -> dict[str, Any]:
        """The pipeline arguments of this backend besides the embeddings, sizes, steps, guidance and noise."""
        return {}


class StableUnCLIPGenerator(_DiffusersGenerator):
    """SD-2.1-unCLIP (``StableUnCLIPImg2ImgPipeline``) conditioned on decoded OpenCLIP ViT-H/14 embeddings.

    The pipeline is called with ``image_embeds=`` (so its own image encoder is loaded but not run), an empty
    prompt by default, and ``noise_level`` (0 = follow the embedding closely; higher = more variation).
    ``embed_norm`` defaults to the expected norm under the pipeline's ``image_normalizer`` statistics.
    """

    default_steps = 25
    default_guidance = 10.0  # the pipeline's own default
    default_size = (768, 768)
    size_multiple = 8

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = "fp16",
        batch_size: int = 4,
        noise_level: int = 0,
        prompt: str = "",
        size: tuple[int, int] | None = None,
        embed_norm: float | None = None,
        space: str = STABLE_UNCLIP_SPACE,
        allow_download: bool = False,
    ) -> None:
        self._load("StableUnCLIPImg2ImgPipeline", path, "Stable unCLIP pipeline",
                   "stabilityai/stable-diffusion-2-1-unclip", device, dtype, batch_size, size, embed_norm,
                   allow_download)
        self.noise_level = int(noise_level)
        self.prompt = str(prompt)
        self.dim = int(self.pipe.image_normalizer.mean.shape[-1])
        self.space = space
        self.name = f"stable-unclip:{path}"
        vae_scale = 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)
        self.default_size = (self.pipe.unet.config.sample_size * vae_scale,) * 2

    def _default_embed_norm(self) -> float:
        import torch

        norm = self.pipe.image_normalizer
        with torch.no_grad():
            return float(torch.sqrt((norm.mean.float() ** 2).sum() + (norm.std.float() ** 2).sum()))

    def _extra_params(self) -> dict[str, Any]:
        return {"noise_level": self.noise_level, "prompt": self.prompt}

    def _call_kwargs(self, embeds):
        return {"prompt": [self.prompt] * len(embeds), "noise_level": self.noise_level}


class KandinskyV22Generator(_DiffusersGenerator):
    """Kandinsky 2.2 decoder (``KandinskyV22Pipeline``) conditioned on decoded OpenCLIP ViT-bigG/14 embeddings.

    ``negative_image_embeds`` for classifier-free guidance: zeros by default; Kandinsky's prior pipeline
    uses the CLIP embedding of an all-zero image instead (``KandinskyV22PriorPipeline.get_zero_embed``):
    pass that vector (already at the raw scale) as ``negative_embed`` to match it exactly.
    ``embed_norm``: explicit, or the expected norm under the prior's ``clip_mean``/``clip_std`` when
    ``prior_path`` (a Kandinsky 2.2 prior pipeline folder) is given. The decoder alone stores no statistics
    of its conditioning, so without either the fallback is ``sqrt(dim)`` (unit RMS per dimension), a guess:
    pass ``embed_norm`` or ``prior_path`` for real weights. The value used is part of ``params()``.
    """

    default_steps = 50
    default_guidance = 4.0
    default_size = (512, 512)

    def __init__(
        self,
        decoder_path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = "fp16",
        batch_size: int = 4,
        size: tuple[int, int] | None = None,
        embed_norm: float | None = None,
        prior_path: str | os.PathLike | None = None,
        negative_embed: np.ndarray | None = None,
        space: str = KANDINSKY22_SPACE,
        allow_download: bool = False,
    ) -> None:
        self._load("KandinskyV22Pipeline", decoder_path, "Kandinsky 2.2 decoder pipeline",
                   "kandinsky-community/kandinsky-2-2-decoder", device, dtype, batch_size, size, embed_norm,
                   allow_download)
        unet_cfg = self.pipe.unet.config
        self.dim = int(unet_cfg.encoder_hid_dim)
        self.space = space
        self.name = f"kandinsky22:{decoder_path}"
        self.prior_path = None if prior_path is None else Path(prior_path).expanduser()
        # The pipeline rounds sizes to multiples of movq_scale_factor**2 (latents are size / scale_factor).
        self.size_multiple = int(self.pipe.movq_scale_factor) ** 2
        if negative_embed is not None:
            neg = np.asarray(negative_embed, dtype=np.float32).reshape(-1)
            if neg.shape != (self.dim,):
                raise InvalidInputError(f"negative_embed must have {self.dim} values, got {neg.shape}")
            self.negative_embed = neg
            self.negative_kind = "given"
        else:
            self.negative_embed = np.zeros(self.dim, dtype=np.float32)
            self.negative_kind = "zeros"

    def _default_embed_norm(self) -> float:
        if self.prior_path is not None:
            stats = _prior_clip_stats(self.prior_path)
            return float(
                np.sqrt((stats[0].astype(np.float64) ** 2).sum() + (stats[1].astype(np.float64) ** 2).sum())
            )
        return float(np.sqrt(self.dim))

    def _extra_params(self) -> dict[str, Any]:
        return {"negative_image_embeds": self.negative_kind}

    def _call_kwargs(self, embeds):
        import torch

        neg = torch.from_numpy(np.repeat(self.negative_embed[None], len(embeds), axis=0)).to(embeds)
        return {"negative_image_embeds": neg}


def _prior_clip_stats(prior_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``clip_mean`` and ``clip_std`` of a Kandinsky 2.2 prior (pipeline folder or its ``prior/`` folder)."""
    from safetensors import safe_open

    folder = prior_path / "prior" if (prior_path / "prior").is_dir() else prior_path
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            if {"clip_mean", "clip_std"} <= set(st.keys()):
                mean, std = (st.get_tensor(k).float().reshape(-1).numpy() for k in ("clip_mean", "clip_std"))
                return mean, std
    raise MissingModelError(f"no clip_mean/clip_std found in the Kandinsky prior weights under {folder}")
