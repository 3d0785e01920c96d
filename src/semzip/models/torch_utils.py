"""Torch and Hugging Face hub helpers shared by the model backends (encoders, captioners, generators, refiners),
and :class:`DiffusersRuntime`, what the diffusers generators and refiners have in common.

torch, transformers, diffusers and huggingface_hub are imported inside the functions only, so importing this
module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from semzip.errors import InvalidInputError, MissingModelError


def resolve_device(device: str | None) -> str:
    """``device`` as given, or ``"cuda"`` when available, else ``"cpu"``."""
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_DTYPES = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def resolve_dtype(dtype: Any, device: str) -> Any:
    """A torch dtype from ``"fp32"|"fp16"|"bf16"`` (or a torch dtype); fp16 on CPU falls back to fp32."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        key = str(dtype).lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise InvalidInputError(f"unknown precision {dtype!r}; use one of fp32, fp16, bf16")
        out = getattr(torch, _DTYPES[key])
    if out == torch.float16 and not str(device).startswith("cuda"):
        return torch.float32  # fp16 matmuls are slow or missing on CPU
    return out


def dtype_kwarg(lib: Any, dtype: Any) -> dict[str, Any]:
    """``dtype=`` for current transformers/diffusers, ``torch_dtype=`` for versions that predate it."""
    if lib.__name__ == "diffusers":
        import importlib

        deprecation = importlib.import_module("diffusers.utils.deprecation_utils")
        new = hasattr(deprecation, "_resolve_dtype")
    else:
        from packaging.version import Version

        new = Version(lib.__version__).release >= (4, 56)
    return {"dtype" if new else "torch_dtype": dtype}


@contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """While active, forbid Hugging Face hub access (HF_HUB_OFFLINE=1), restoring the previous state after.

    huggingface_hub reads the variable once at import, so its module constant is switched too.
    """
    if not active:
        yield
        return
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:
        hub_constants = None
    saved_const = getattr(hub_constants, "HF_HUB_OFFLINE", None)
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = saved_const
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def is_hub_id(s: str) -> bool:
    """``owner/name`` (a Hugging Face hub id) that is not a path here."""
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not Path(s).expanduser().exists()


def hub_folder(spec: str, allow_download: bool, what: str, hint: str) -> str:
    """Where to load ``spec`` from: a local folder as is; a hub id from the local hub cache (its snapshot
    folder), or, when downloads are allowed, the id itself (fetched on load). Anything else: MissingModelError."""
    local = Path(spec).expanduser()
    if local.is_dir():
        return str(local)
    if is_hub_id(spec):
        if allow_download:
            return spec
        try:
            from huggingface_hub import snapshot_download

            with hub_offline(True):
                return str(snapshot_download(spec, local_files_only=True))
        except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and friends
            raise MissingModelError(
                f"{what} {spec!r} is not in the local hub cache (HF_HOME); allow the download once with "
                f"--allow-download, or pass a local folder. {hint}."
            ) from None
    raise MissingModelError(f"{what} folder not found: {spec}. {hint}, or allow the download of a hub id with "
                            "--allow-download.")


# ----------------------------------------------------------------------------------------------------------
# diffusers pipelines


def diffusers_folder(path: str | os.PathLike, what: str, hint: str) -> Path:
    """``path`` as a diffusers pipeline folder (with model_index.json), else MissingModelError."""
    p = Path(path).expanduser()
    if not p.is_dir() or not (p / "model_index.json").is_file():
        raise MissingModelError(
            f"{what} not found at {p}: expected a diffusers pipeline folder (with model_index.json). {hint}"
        )
    return p


def load_diffusers_pipeline(pipeline: str, path: str | os.PathLike, what: str, hint: str, dtype: Any, device: str,
                            allow_download: bool = False, **kwargs: Any) -> tuple[Any, Path | str]:
    """A diffusers pipeline class by name from a local folder (or the hub if allowed), offline by default.

    ``kwargs`` go to ``from_pretrained`` (components, safety-checker switches). Returns the pipeline, moved to
    ``device`` with its progress bar off, and where its weights are: the local folder, or the hub id when it
    was downloaded (no folder to hash: :class:`DiffusersRuntime` then fingerprints the modules).
    """
    local = Path(path).expanduser()
    if not allow_download and not local.exists() and is_hub_id(str(path)):
        local = Path(hub_folder(str(path), False, what, hint))  # a hub id from the local cache
    if not allow_download or local.exists():
        local = diffusers_folder(local, what, hint)
    import diffusers

    src = str(local) if local.exists() else str(path)
    try:
        with hub_offline(not allow_download):
            pipe = getattr(diffusers, pipeline).from_pretrained(
                src, local_files_only=not allow_download, **kwargs, **dtype_kwarg(diffusers, dtype)
            )
    except (OSError, ValueError) as exc:
        raise MissingModelError(f"cannot load the {what} from {path}: {exc}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), (local if local.exists() else str(path))


SEEDING = "cpu torch.Generator per item, seed + item index"
"""How the diffusers backends draw noise, as recorded in their ``params()``."""


class DiffusersRuntime:
    """What the diffusers generators and refiners share: where and at which precision they run, their batch
    size, a lazy fingerprint of their weights, the seeding and scheduler entries of ``params()`` and the
    per-item seeded noise generators (item ``k`` of a call draws from ``torch.Generator("cpu")`` seeded with
    ``seed + k``, so its pixels do not depend on how the call was batched).

    A subclass calls :meth:`_init_runtime` before loading its pipeline into ``self.pipe`` and says in
    :meth:`_weights` what its fingerprint covers.
    """

    pipe: Any
    device: str
    dtype: Any
    batch_size: int

    def _init_runtime(self, device: str | None, dtype: Any, batch_size: int) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise InvalidInputError("batch_size must be positive")
        self._fingerprint: str | None = None

    def _weights(self) -> list[tuple[Path | str, Any]]:
        """(local folder or hub id, module) per weight source; a hub id is fingerprinted from the module.
        Default: the pipeline's folder (every weight file in it), or its UNet when downloaded."""
        return [(self.path, self.pipe.unet)]

    @property
    def fingerprint(self) -> str:
        """Short hex hash of the weights: of the one folder, or of the parts' fingerprints joined by ``+``."""
        if self._fingerprint is None:
            from semzip.models.fingerprint import fingerprint_path, fingerprint_state_dict, fingerprint_text

            parts = [
                fingerprint_path(w) if isinstance(w, Path) else fingerprint_state_dict(module.state_dict())
                for w, module in self._weights()
            ]
            self._fingerprint = parts[0] if len(parts) == 1 else fingerprint_text("+".join(parts))
        return self._fingerprint

    def _seeding_params(self, seed: int) -> dict[str, Any]:
        """The ``params()`` entries fingerprint, seed, seeding, scheduler and scheduler_config, in that order."""
        sched = self.pipe.scheduler
        return {
            "fingerprint": self.fingerprint,
            "seed": int(seed),
            "seeding": SEEDING,
            "scheduler": type(sched).__name__,
            "scheduler_config": {k: v for k, v in dict(sched.config).items() if not k.startswith("_")},
        }

    @property
    def dtype_name(self) -> str:
        """The precision as ``params()`` records it (``float32``, ``float16``, ``bfloat16``)."""
        return str(self.dtype).removeprefix("torch.")

    def _run_pipeline(self, generators: list[Any], steps: int, guidance: float, **kwargs: Any) -> Any:
        """The pipeline's images (numpy, in [0, 1]) for ``kwargs`` plus what every backend passes: steps,
        guidance, the per-item noise generators and numpy output."""
        return self.pipe(
            num_inference_steps=steps, guidance_scale=guidance, generator=generators, output_type="np", **kwargs
        ).images

    @staticmethod
    def _noise(seed: int, start: int, stop: int) -> list[Any]:
        """One CPU ``torch.Generator`` per item ``start .. stop - 1`` of a call, seeded with ``seed + item``."""
        import torch

        return [torch.Generator("cpu").manual_seed(int(seed) + k) for k in range(start, stop)]
