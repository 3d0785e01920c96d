"""Refiners: the decoder side of the image-text codec, (low-rate LIC image, caption) -> final image.

``IdentityRefiner`` is the offline default: no diffusion decoder exists offline, so the LIC image (resized to
the output size) is the output. ``SDImg2ImgRefiner`` runs Stable Diffusion img2img from the upsampled LIC
image with the caption as prompt (``strength`` = how far the diffusion may move away from the LIC image);
``ControlNetTileRefiner`` adds a tile ControlNet conditioned on the same image, which keeps the layout while
allowing higher strengths.

Reproducibility: the noise of item ``i`` of a call is drawn from a CPU ``torch.Generator`` seeded with
``seed + i``, so an item's pixels do not depend on how the call was batched; ``params()`` returns everything
the decoder needs to repeat a decode (refiner and weight fingerprint, seed, scheduler and its config, steps,
strength, guidance, sizes, resampling), to be stored in the archive header. Diffusion output is repeatable
only on the same hardware and library versions.

Sizes: ``sizes`` is one (width, height) for all items or one per item (normally each original image's size);
``None`` keeps each input's size. A diffusion refiner works at that size rounded to a multiple of 8 (the VAE
needs it), optionally capped at ``max_side``, and resizes the result to the exact output size.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semzip.errors import InvalidInputError, MissingModelError
from semzip.models.torch_utils import DiffusersRuntime

Progress = Callable[[int], None]
Size = tuple[int, int]

IDENTITY_NOTE = "no diffusion decoder offline: the LIC image is the output"


def resize_rgb(image: np.ndarray, size: Size) -> np.ndarray:
    """Deterministic Pillow resize of an RGB uint8 image to ``size`` = (width, height): Lanczos down, bicubic up."""
    from PIL import Image

    w, h = size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    down = w * h < image.shape[0] * image.shape[1]
    method = Image.Resampling.LANCZOS if down else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((w, h), method), dtype=np.uint8)


def _check_inputs(images: Sequence[Any], captions: Sequence[str] | None) -> tuple[list[np.ndarray], list[str]]:
    from semzip.data.images import as_rgb_array

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    arrays = [as_rgb_array(img, f"image {i}") for i, img in enumerate(images)]
    if captions is None:
        captions = [""] * len(arrays)
    elif isinstance(captions, str):
        captions = [captions]
    captions = [str(c) for c in captions]
    if len(captions) != len(arrays):
        raise InvalidInputError(f"{len(arrays)} images but {len(captions)} captions")
    return arrays, captions


def _sizes(arrays: list[np.ndarray], sizes: Any) -> list[Size]:
    from semzip.models.thumbnail import check_size

    if sizes is None:
        return [(a.shape[1], a.shape[0]) for a in arrays]
    if len(sizes) == 2 and all(isinstance(s, (int, np.integer)) for s in sizes):
        return [check_size(sizes)] * len(arrays)
    out = [check_size(s) for s in sizes]
    if len(out) != len(arrays):
        raise InvalidInputError(f"{len(arrays)} images but {len(out)} sizes")
    return out


class Refiner(ABC):
    """Renders the final image of each item from its decoded (low-rate) image and its caption."""

    name: str
    description: str = ""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Short hex hash of the weights (recorded in archive headers)."""

    @abstractmethod
    def refine(
        self,
        images: Sequence[np.ndarray],
        captions: Sequence[str] | None = None,
        seed: int = 0,
        steps: int | None = None,
        strength: float | None = None,
        guidance: float | None = None,
        sizes: Size | Sequence[Size] | None = None,
        progress: Progress | None = None,
    ) -> list[np.ndarray]:
        """One RGB uint8 (H, W, 3) image per input image, at ``sizes`` (default: each input's size)."""

    @abstractmethod
    def params(
        self,
        seed: int = 0,
        steps: int | None = None,
        strength: float | None = None,
        guidance: float | None = None,
        size: Size | None = None,
    ) -> dict[str, Any]:
        """The settings ``refine`` uses with these arguments, as a JSON-able dict for archive headers."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class IdentityRefiner(Refiner):
    """The offline default: returns the LIC image, resized to the output size; captions and seed are unused."""

    name = "identity"
    description = IDENTITY_NOTE

    @property
    def fingerprint(self) -> str:
        from semzip.models.fingerprint import fingerprint_text

        return fingerprint_text("identity refiner: pillow resize, lanczos down, bicubic up")

    def refine(self, images, captions=None, seed=0, steps=None, strength=None, guidance=None, sizes=None,
               progress=None):
        arrays, _ = _check_inputs(images, captions)
        out = [resize_rgb(a, s) for a, s in zip(arrays, _sizes(arrays, sizes), strict=True)]
        if progress is not None:
            progress(len(out))
        return out

    def params(self, seed=0, steps=None, strength=None, guidance=None, size=None):
        return {
            "refiner": self.name,
            "note": IDENTITY_NOTE,
            "size": list(size) if size is not None else "per item",
            "resample": "pillow: lanczos down, bicubic up",
        }


# ----------------------------------------------------------------------------------------------------------
# diffusers backends


def _load(pipeline: str, path: str | os.PathLike, what: str, hint: str, dtype: Any, device: str,
          allow_download: bool, **components: Any) -> tuple[Any, Path | str]:
    """A diffusers pipeline by class name from a local folder (or the hub if allowed), safety checker off."""
    from semzip.models.torch_utils import load_diffusers_pipeline

    return load_diffusers_pipeline(
        pipeline, path, what, hint, dtype, device, allow_download,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False, **components,
    )


_SD_HINT = (
    "Save a Stable Diffusion 1.x/2.x pipeline (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) with "
    "save_pretrained on a machine with access, or pass a hub id with --allow-download."
)


class _DiffusersRefiner(DiffusersRuntime, Refiner):
    default_steps = 30
    default_strength = 0.5
    default_guidance = 7.5
    size_multiple = 8

    def _setup(self, device: str | None, dtype: Any, batch_size: int, negative_prompt: str,
               max_side: int | None) -> None:
        self._init_runtime(device, dtype, batch_size)
        self.negative_prompt = str(negative_prompt)
        if max_side is not None and int(max_side) < self.size_multiple:
            raise InvalidInputError(f"max_side must be at least {self.size_multiple}, got {max_side}")
        self.max_side = None if max_side is None else int(max_side)

    def _resolve(self, steps, strength, guidance) -> tuple[int, float, float]:
        steps = int(self.default_steps if steps is None else steps)
        strength = float(self.default_strength if strength is None else strength)
        guidance = float(self.default_guidance if guidance is None else guidance)
        if not 0.0 < strength <= 1.0:
            raise InvalidInputError(f"strength must lie in (0, 1], got {strength}")
        if steps < 1 or int(steps * strength) < 1:
            raise InvalidInputError(
                f"steps x strength must give at least one denoising step, got {steps} x {strength}"
            )
        if guidance < 0:
            raise InvalidInputError(f"guidance must be non-negative, got {guidance}")
        return steps, strength, guidance

    def work_size(self, size: Size) -> Size:
        """The size the pipeline runs at for output ``size``: capped at ``max_side``, rounded to a multiple of 8."""
        w, h = size
        if self.max_side is not None and max(w, h) > self.max_side:
            f = self.max_side / max(w, h)
            w, h = w * f, h * f
        m = self.size_multiple
        return max(m, round(w / m) * m), max(m, round(h / m) * m)

    def params(self, seed=0, steps=None, strength=None, guidance=None, size=None):
        steps, strength, guidance = self._resolve(steps, strength, guidance)
        return {
            "refiner": self.name,
            **self._seeding_params(seed),
            "steps": steps,
            "denoising_steps": int(steps * strength),
            "strength": strength,
            "guidance": guidance,
            "negative_prompt": self.negative_prompt,
            "prompt_max_tokens": int(getattr(self.pipe.tokenizer, "model_max_length", 77)),
            "size": list(size) if size is not None else "per item",
            "work_size": f"output size, capped at max_side, rounded to a multiple of {self.size_multiple}",
            "max_side": self.max_side,
            "resample": "pillow: lanczos down, bicubic up",
            "dtype": self.dtype_name,
            **self._extra_params(),
        }

    def _extra_params(self) -> dict[str, Any]:
        return {}

    def refine(self, images, captions=None, seed=0, steps=None, strength=None, guidance=None, sizes=None,
               progress=None):
        import torch

        arrays, captions = _check_inputs(images, captions)
        steps, strength, guidance = self._resolve(steps, strength, guidance)
        out_sizes = _sizes(arrays, sizes)
        work = [self.work_size(s) for s in out_sizes]
        out: list[np.ndarray] = []
        i = 0
        while i < len(arrays):
            j = i + 1  # a batch: consecutive items of the same working size
            while j < len(arrays) and j - i < self.batch_size and work[j] == work[i]:
                j += 1
            w, h = work[i]
            init = np.stack([resize_rgb(a, (w, h)) for a in arrays[i:j]]).astype(np.float32) / 255.0
            gens = self._noise(seed, i, j)
            with torch.inference_mode():
                result = self._call(init, captions[i:j], gens, steps, strength, guidance, w, h)
            result = np.clip(np.rint(np.asarray(result, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
            out.extend(resize_rgb(r, s) for r, s in zip(result, out_sizes[i:j], strict=True))
            if progress is not None:
                progress(j - i)
            i = j
        return out

    def _call(self, init, prompts, generators, steps, strength, guidance, width, height) -> np.ndarray:
        neg = [self.negative_prompt] * len(prompts) if guidance > 1 else None
        return self._run_pipeline(generators, steps, guidance, prompt=list(prompts), image=init, strength=strength,
                                  negative_prompt=neg, **self._call_kwargs(init, width, height))

    def _call_kwargs(self, init: np.ndarray, width: int, height: int) -> dict[str, Any]:
        """The pipeline arguments of this backend besides the image, prompts, steps, strength, guidance and noise."""
        return {}


class SDImg2ImgRefiner(_DiffusersRefiner):
    """Stable Diffusion img2img (``StableDiffusionImg2ImgPipeline``): the upsampled LIC image is the starting
    point, the caption the prompt. Prompts longer than the text encoder's window (77 tokens for SD) are
    truncated by the pipeline. The safety checker is not loaded (it would black out images of a codec)."""

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = "fp16",
        batch_size: int = 4,
        negative_prompt: str = "",
        max_side: int | None = None,
        allow_download: bool = False,
    ) -> None:
        self._setup(device, dtype, batch_size, negative_prompt, max_side)
        self.pipe, self.path = _load(
            "StableDiffusionImg2ImgPipeline", path, "Stable Diffusion pipeline", _SD_HINT, self.dtype,
            self.device, allow_download,
        )
        self.name = f"sd-img2img:{path}"
        self.description = "Stable Diffusion img2img from the LIC image, prompted by the caption"


class ControlNetTileRefiner(_DiffusersRefiner):
    """Stable Diffusion img2img with a tile ControlNet (``StableDiffusionControlNetImg2ImgPipeline``, e.g.
    lllyasviel/control_v11f1e_sd15_tile): the upsampled LIC image is both the starting point and the control
    image, so the layout holds at higher ``strength`` than plain img2img."""

    default_strength = 0.75
    default_conditioning = 1.0

    def __init__(
        self,
        sd_path: str | os.PathLike,
        controlnet_path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = "fp16",
        batch_size: int = 4,
        negative_prompt: str = "",
        max_side: int | None = None,
        conditioning_scale: float | None = None,
        allow_download: bool = False,
    ) -> None:
        from semzip.models.torch_utils import dtype_kwarg, hub_offline

        self._setup(device, dtype, batch_size, negative_prompt, max_side)
        cn_local = Path(controlnet_path).expanduser()
        if not allow_download and not (cn_local / "config.json").is_file():
            raise MissingModelError(
                f"ControlNet not found at {cn_local}: expected a diffusers ControlNetModel folder (config.json + "
                "weights). Save lllyasviel/control_v11f1e_sd15_tile with save_pretrained on a machine with access."
            )
        import diffusers

        try:
            with hub_offline(not allow_download):
                controlnet = diffusers.ControlNetModel.from_pretrained(
                    str(cn_local) if cn_local.exists() else str(controlnet_path),
                    local_files_only=not allow_download,
                    **dtype_kwarg(diffusers, self.dtype),
                )
        except (OSError, ValueError) as exc:
            raise MissingModelError(f"cannot load the ControlNet from {controlnet_path}: {exc}") from None
        self.pipe, self.path = _load(
            "StableDiffusionControlNetImg2ImgPipeline", sd_path, "Stable Diffusion pipeline", _SD_HINT,
            self.dtype, self.device, allow_download, controlnet=controlnet,
        )
        self.controlnet_path = cn_local if cn_local.exists() else str(controlnet_path)
        self.conditioning_scale = float(
            self.default_conditioning if conditioning_scale is None else conditioning_scale
        )
        self.name = f"controlnet-tile:{sd_path},{controlnet_path}"
        self.description = "Stable Diffusion img2img + tile ControlNet on the LIC image, prompted by the caption"

    def _weights(self):
        return [(self.path, self.pipe.unet), (self.controlnet_path, self.pipe.controlnet)]

    def _extra_params(self) -> dict[str, Any]:
        return {"controlnet_conditioning_scale": self.conditioning_scale, "control_image": "the LIC image"}

    def _call_kwargs(self, init, width, height):
        return {"control_image": init, "height": height, "width": width,
                "controlnet_conditioning_scale": self.conditioning_scale}
