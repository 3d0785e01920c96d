"""Training configuration for the LIC trainer: a TOML file (``tomllib``) mapped onto small dataclasses.

Relative paths in a config file are resolved against the folder of that file, so
``configs/lic-tiny.toml`` can say ``train_dir = "../../shared/data/train"`` and work from any directory.
Unknown keys are refused (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semzip.errors import InvalidInputError

__all__ = ["DataConfig", "LossConfig", "ModelConfig", "TrainConfig", "load_config"]


@dataclass
class ModelConfig:
    """Architecture of :class:`semzip.models.lic.TinyHyperprior` (channels of g_a/g_s, latent, hyper path)."""

    N: int = 48
    M: int = 64
    Nh: int = 48


@dataclass
class DataConfig:
    """Training images: a folder (never Kodak), random square crops with flips."""

    train_dir: str = "../../shared/data/train"
    crop: int = 128
    batch_size: int = 8


@dataclass
class LossConfig:
    """Weights of the loss terms: ``rate * bpp + mse * MSE*255^2 + lpips * LPIPS + dists * DISTS + clip * (1 - cos)``.

    ``mse`` is the usual lambda of rate-distortion training. Terms with weight 0 are skipped; LPIPS/DISTS
    whose backbone weights are absent are dropped with a message (never silently).
    """

    rate: float = 1.0
    mse: float = 0.0035
    lpips: float = 0.0
    dists: float = 0.0
    clip: float = 0.0
    lpips_net: str = "alex"
    clip_encoder: str = "thumbnail"
    lpips_backbone: str = ""
    dists_backbone: str = ""


@dataclass
class TrainConfig:
    """Everything a training run needs; ``out_dir`` holds checkpoints and the log, ``export`` the weights."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 2000
    max_minutes: float = 0.0
    lr: float = 5e-4
    lr_final: float = 5e-5
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    log_every: int = 25
    checkpoint_every: int = 200
    out_dir: str = "~/.cache/semzip/runs/lic-tiny"
    init: str = ""
    export: str = ""
    name: str = "lic-tiny"
    base_dir: str = field(default=".", repr=False)

    def path(self, value: str) -> Path:
        """A config path resolved against the config file's folder (absolute paths unchanged)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("base_dir")
        return d


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "loss": LossConfig}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known) - set(_SECTIONS if cls is TrainConfig else ()))
    if unknown:
        raise InvalidInputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kw = {}
    for k, v in values.items():
        if k in _SECTIONS and cls is TrainConfig:
            if not isinstance(v, dict):
                raise InvalidInputError(f"{where}: [{k}] must be a table")
            kw[k] = _build(_SECTIONS[k], v, f"{where} [{k}]")
            continue
        default = known[k].default
        if isinstance(default, bool) or default is dataclasses.MISSING:
            kw[k] = v
        elif isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            kw[k] = float(v)
        elif default is not None and not isinstance(v, type(default)):
            raise InvalidInputError(f"{where}: {k} must be {type(default).__name__}, got {v!r}")
        else:
            kw[k] = v
    return cls(**kw)


def from_dict(values: dict[str, Any], base_dir: str | Path = ".") -> TrainConfig:
    """A :class:`TrainConfig` from a nested dict (a TOML document: top-level keys + [model]/[data]/[loss])."""
    values = dict(values)
    values.pop("base_dir", None)
    cfg = _build(TrainConfig, values, "config")
    cfg.base_dir = str(Path(base_dir).resolve())
    _validate(cfg)
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML training config; relative paths inside resolve against its folder."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(f"training config not found: {p}")
    try:
        values = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{p}: invalid TOML ({exc})") from None
    return from_dict(values, p.parent)


def _validate(cfg: TrainConfig) -> None:
    def positive(name: str, v: float) -> None:
        if v <= 0:
            raise InvalidInputError(f"config: {name} must be positive, got {v}")

    for name in ("N", "M", "Nh"):
        positive(f"model.{name}", getattr(cfg.model, name))
    positive("data.crop", cfg.data.crop)
    positive("data.batch_size", cfg.data.batch_size)
    positive("steps", cfg.steps)
    positive("lr", cfg.lr)
    positive("threads", cfg.threads)
    if cfg.data.crop % 64:
        raise InvalidInputError(f"config: data.crop must be a multiple of 64 (the model's stride), got {cfg.data.crop}")
    for k in ("rate", "mse", "lpips", "dists", "clip"):
        if getattr(cfg.loss, k) < 0:
            raise InvalidInputError(f"config: loss.{k} must be >= 0")
    if cfg.device not in ("cpu", "cuda", "auto") and not cfg.device.startswith("cuda:"):
        raise InvalidInputError(f"config: device must be cpu, cuda, cuda:N or auto, got {cfg.device!r}")
