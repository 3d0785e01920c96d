"""Training of :class:`semzip.models.lic.TinyHyperprior`: rate-distortion, then semantic-perceptual fine-tuning.

Loss per batch (weights from the config's ``[loss]`` table)::

    rate * bpp  +  mse * MSE*255^2  +  lpips * LPIPS  +  dists * DISTS  +  clip * (1 - cos(E(x), E(x_hat)))

``bpp`` uses the additive-uniform-noise proxy for y and z (Ballé et al. 2017); the reconstruction goes
through straight-through rounding of ``y - mu``. ``E`` is the embedding encoder named by
``loss.clip_encoder``: ``hf:<folder>`` runs a transformers CLIP differentiably (bilinear resize to its input
size, its mean/std); the offline ``thumbnail`` encoder is re-implemented in torch (area pooling + the
opponent-colour projection), and is reported as ``thumbnail-sim``, a colour-layout term, not CLIP.
LPIPS/DISTS need ImageNet backbones (see :mod:`semzip.eval.metrics`); where they are absent the trainer
prints that it drops the term and records it in the checkpoint's JSON.

Checkpoints (``out_dir/checkpoint/``): ``model.safetensors`` (net weights, fp32), ``optim.safetensors``
(Adam moments + torch RNG state), ``state.json`` (step, epoch, config, numpy RNG state, dropped terms).
``resume=True`` continues from there. At the end the model is exported (weights fp16 + integer z tables)
to ``export`` (default ``out_dir/<name>.safetensors``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semzip.errors import InvalidInputError, MissingModelError
from semzip.format import atomic_write
from semzip.train.config import TrainConfig

__all__ = ["TrainResult", "TrainingData", "clip_embedder", "perceptual_terms", "train_lic"]

CHECKPOINT_DIR = "checkpoint"


def _torch() -> Any:
    from semzip._optional import require

    return require("torch", "torch", "LIC training")


# ----------------------------------------------------------------------------------------------------- data


class TrainingData:
    """All images of a folder in memory; random square crops with horizontal/vertical flips."""

    def __init__(self, folder: str | os.PathLike, crop: int, rng: np.random.Generator) -> None:
        from semzip.data.images import list_images, load_image

        root = Path(folder)
        if "kodak" in str(root.resolve()).lower():
            raise InvalidInputError(f"{root}: Kodak is a test set; never train on it (use shared/data/train)")
        if not root.is_dir():
            raise InvalidInputError(
                f"training folder not found: {root}. The offline photos live in <repo>/../shared/data/train; "
                "set data.train_dir in the config"
            )
        paths = list_images(root)
        if any(p.name.lower().startswith("kodim") for p in paths):
            raise InvalidInputError(f"{root} holds Kodak images (kodim*): Kodak is a test set; never train on it")
        self.images = []
        skipped = 0
        for p in paths:
            a = load_image(p)
            if min(a.shape[:2]) >= crop:
                self.images.append(a)
            else:
                skipped += 1
        if not self.images:
            raise InvalidInputError(f"{root}: no image with both sides >= crop {crop} ({len(paths)} files)")
        self.crop, self.rng, self.skipped = crop, rng, skipped
        sizes = np.array([a.shape[0] * a.shape[1] for a in self.images], dtype=np.float64)
        self.weights = sizes / sizes.sum()  # sample images by area: every pixel about equally likely

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, n: int) -> np.ndarray:
        """``n`` random crops, (n, crop, crop, 3) uint8."""
        c, out = self.crop, np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)
        for i, k in enumerate(self.rng.choice(len(self.images), size=n, p=self.weights)):
            a = self.images[int(k)]
            y = int(self.rng.integers(0, a.shape[0] - c + 1))
            x = int(self.rng.integers(0, a.shape[1] - c + 1))
            patch = a[y : y + c, x : x + c]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            if self.rng.random() < 0.5:
                patch = patch[::-1]
            out[i] = patch
        return out


# ---------------------------------------------------------------------------------------- perceptual terms


def clip_embedder(spec: str, device: str = "cpu") -> tuple[Callable[[Any], Any], str]:
    """A differentiable ``f(x in [0,1], (B,3,H,W)) -> L2-normalised embeddings`` and its label."""
    torch = _torch()
    F = torch.nn.functional
    kind = spec.partition(":")[0]
    if kind == "thumbnail":
        from semzip.models.thumbnail import OPPONENT, ThumbnailEncoder

        enc = ThumbnailEncoder(**({"grid": int(spec.partition(":")[2])} if ":" in spec else {}))
        opp = torch.tensor(OPPONENT, dtype=torch.float32, device=device)
        grid, c = enc.grid, float(enc.scale)

        def thumb(x):
            t = F.adaptive_avg_pool2d(x, grid) - 0.5  # area average: PIL's BOX filter when H, W divide by grid
            t = torch.einsum("bchw,dc->bhwd", t, opp).reshape(x.shape[0], -1)
            v = torch.cat([t, torch.full_like(t[:, :1], c)], dim=1)
            return F.normalize(v, dim=1)

        return thumb, f"thumbnail-sim (colour layout of {spec}, not CLIP)"
    if kind == "hf":
        from semzip.models.registry import load_encoder

        enc = load_encoder(spec, device=device)
        model = enc.model.eval().requires_grad_(False)
        proc = enc.image_processor
        size = proc.crop_size if getattr(proc, "do_center_crop", False) and proc.crop_size else proc.size
        hw = (int(size.get("height", size.get("shortest_edge"))), int(size.get("width", size.get("shortest_edge"))))
        mean = torch.tensor(proc.image_mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(proc.image_std, device=device).view(1, 3, 1, 1)

        def clip(x):
            px = (F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True) - mean) / std
            if enc.has_text_tower:
                feats = model.get_image_features(pixel_values=px)
            else:
                feats = model(pixel_values=px).image_embeds
            feats = getattr(feats, "pooler_output", feats)
            return F.normalize(feats.float(), dim=1)

        return clip, f"CLIP ({spec})"
    raise InvalidInputError(
        f"the CLIP loss supports the 'thumbnail' and 'hf:<folder>' encoders, got {spec!r}"
    )


@dataclass
class Terms:
    """The active perceptual/semantic loss terms: name -> (weight, fn(x_hat, x) -> per-batch scalar)."""

    active: dict[str, tuple[float, Callable[[Any, Any], Any]]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def perceptual_terms(cfg: TrainConfig, device: str, say: Callable[[str], None] = print) -> Terms:
    """Build LPIPS / DISTS / CLIP terms with weight > 0; unavailable ones are dropped, and said so."""
    from semzip.eval.metrics import get_metric

    terms = Terms()
    loss = cfg.loss
    for name, weight, metric, backbone in (
        ("lpips", loss.lpips, f"lpips-{loss.lpips_net}", loss.lpips_backbone),
        ("dists", loss.dists, "dists", loss.dists_backbone),
    ):
        if weight <= 0:
            continue
        m = get_metric(metric, backbone=cfg.path(backbone) if backbone else None, device=device)
        ok, why = m.available()
        if not ok:
            terms.dropped[name] = why
            say(f"dropping the {name} loss term (weight {weight}): {why}")
            continue
        module = m.model().requires_grad_(False)
        terms.active[name] = (weight, lambda xh, x, mod=module: mod(xh, x).mean())
        terms.labels[name] = m.label
    if loss.clip > 0:
        try:
            embed, label = clip_embedder(loss.clip_encoder, device)
        except MissingModelError as exc:
            terms.dropped["clip"] = str(exc)
            say(f"dropping the clip loss term (weight {loss.clip}): {exc}")
        else:
            def clip_term(xh, x, embed=embed):
                with _torch().no_grad():
                    ref = embed(x)
                return (1 - (embed(xh) * ref).sum(dim=1)).mean()

            terms.active["clip"] = (loss.clip, clip_term)
            terms.labels["clip"] = label
            say(f"clip loss term uses {label}")
    return terms


# ------------------------------------------------------------------------------------------------ checkpoints


def _save_checkpoint(folder: Path, net: Any, opt: Any, state: dict[str, Any]) -> None:
    torch = _torch()
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    model_state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    osd = opt.state_dict()
    optim = {"rng.torch": torch.get_rng_state()}
    for idx, st in osd["state"].items():
        for key, v in st.items():
            optim[f"state.{idx}.{key}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    state = {**state, "param_groups": osd["param_groups"]}
    for name, tensors in (("model", model_state), ("optim", optim)):
        atomic_write(folder / f"{name}.safetensors", save(tensors))
    # written last: a checkpoint is complete once state.json is there
    atomic_write(folder / "state.json", json.dumps(state, indent=1, default=str).encode("utf-8"))


def _load_checkpoint(folder: Path, net: Any, opt: Any, device: str) -> dict[str, Any]:
    torch = _torch()
    from safetensors.torch import load_file

    state_file = folder / "state.json"
    if not state_file.is_file():
        raise InvalidInputError(f"--resume: no checkpoint in {folder} (state.json missing); start without --resume")
    state = json.loads(state_file.read_text(encoding="utf-8"))
    net.load_state_dict(load_file(str(folder / "model.safetensors"), device=device))
    optim = load_file(str(folder / "optim.safetensors"))
    torch.set_rng_state(optim.pop("rng.torch"))
    per: dict[int, dict[str, Any]] = {}
    for key, v in optim.items():
        _, idx, name = key.split(".", 2)
        per.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    opt.load_state_dict({"state": per, "param_groups": state["param_groups"]})
    return state


# ---------------------------------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What a run produced: last step, where the checkpoint and the exported weights are, its log."""

    step: int
    checkpoint: Path
    export: Path | None
    dropped: dict[str, str]
    last: dict[str, float]
    seconds: float


def _device(name: str) -> str:
    torch = _torch()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} requested but CUDA is not available; use device = \"cpu\"")
    return name


def _lr(cfg: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """Cosine decay from ``lr`` to ``lr_final`` after a short linear warm-up.

    Progress is the larger of ``step / steps`` and ``seconds / max_minutes``, so a time-bounded run still
    ends with a decayed learning rate.
    """
    warm = min(50, cfg.steps // 10)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    if cfg.max_minutes > 0:
        t = max(t, seconds / (60 * cfg.max_minutes))
    t = min(1.0, t)
    return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * t))


def train_lic(cfg: TrainConfig, resume: bool = False, say: Callable[[str], None] | None = None,
              progress: bool = True) -> TrainResult:
    """Run (or resume) training as configured; checkpoint periodically, export at the end."""
    torch = _torch()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from semzip.models.lic import TinyHyperprior, build_net

    console = Console(stderr=True)
    say = say or (lambda msg: console.print(msg, highlight=False, markup=False))
    torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    out_dir = cfg.path(cfg.out_dir)
    ckpt = out_dir / CHECKPOINT_DIR
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)

    data = TrainingData(cfg.path(cfg.data.train_dir), cfg.data.crop, rng)
    say(f"training data: {len(data)} images from {cfg.path(cfg.data.train_dir)}"
        + (f" ({data.skipped} smaller than the crop skipped)" if data.skipped else ""))
    net = build_net(cfg.model.N, cfg.model.M, cfg.model.Nh, seed=cfg.seed)
    if cfg.init and not resume:
        init = TinyHyperprior.from_file(cfg.path(cfg.init))
        if (init.net.N, init.net.M, init.net.Nh) != (cfg.model.N, cfg.model.M, cfg.model.Nh):
            raise InvalidInputError(f"init weights {cfg.init} have another architecture than [model]")
        net.load_state_dict(init.net.state_dict())
        say(f"initialised from {cfg.path(cfg.init)} ({init.fingerprint})")
    net = net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    terms = perceptual_terms(cfg, device, say)

    step, elapsed_before = 0, 0.0
    if resume:
        state = _load_checkpoint(ckpt, net, opt, device)
        if state["config"]["model"] != cfg.to_dict()["model"]:
            raise InvalidInputError("--resume: the checkpoint's [model] differs from the config's")
        step, elapsed_before = int(state["step"]), float(state.get("seconds", 0.0))
        rng.bit_generator.state = state["numpy_rng"]
        say(f"resumed from {ckpt} at step {step}")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_file = out_dir / "log.jsonl"

    def checkpoint(last: dict[str, float], seconds: float) -> None:
        _save_checkpoint(ckpt, net, opt, {
            "step": step, "epoch": step * cfg.data.batch_size / max(1, len(data)), "seconds": seconds,
            "config": cfg.to_dict(), "numpy_rng": rng.bit_generator.state, "dropped_terms": terms.dropped,
            "active_terms": terms.labels, "last": last,
        })

    t0 = time.monotonic()
    deadline = t0 + cfg.max_minutes * 60 - elapsed_before if cfg.max_minutes > 0 else math.inf
    last: dict[str, float] = {}
    acc: dict[str, float] = {}
    n_acc = 0
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}")]
    with Progress(*columns, console=console, transient=True, disable=not (progress and console.is_terminal)) as bar:
        task = bar.add_task(f"train {cfg.name}", total=cfg.steps, completed=step, stats="")
        while step < cfg.steps and time.monotonic() < deadline:
            for g in opt.param_groups:
                g["lr"] = lr = _lr(cfg, step, elapsed_before + time.monotonic() - t0)
            x = torch.from_numpy(data.batch(cfg.data.batch_size)).to(device).permute(0, 3, 1, 2).float() / 255
            x_hat, p_y, p_z = net(x)
            n_px = x.shape[0] * x.shape[2] * x.shape[3]
            bpp = (-torch.log2(p_y).sum() - torch.log2(p_z).sum()) / n_px
            mse = torch.mean((x_hat - x) ** 2) * 255**2
            loss = cfg.loss.rate * bpp + cfg.loss.mse * mse
            parts = {"bpp": bpp.item(), "psnr": (10 * torch.log10(255**2 / mse.detach().clamp_min(1e-10))).item()}
            if terms.active:
                xc = x_hat.clamp(0, 1)
                for name, (w, fn) in terms.active.items():
                    v = fn(xc, x)
                    loss = loss + w * v
                    parts[name] = v.item()
            parts["loss"] = loss.item()
            if not math.isfinite(parts["loss"]):
                raise InvalidInputError(f"training diverged at step {step} (loss {parts['loss']}); lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            for k, v in parts.items():
                acc[k] = acc.get(k, 0.0) + v
            n_acc += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                last = {k: v / n_acc for k, v in acc.items()}
                acc, n_acc = {}, 0
                seconds = elapsed_before + time.monotonic() - t0
                rec = {"step": step, "lr": lr, "seconds": round(seconds, 1), **last}
                with open(log_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec) + "\n")
                stats = " ".join(f"{k} {v:.4g}" for k, v in last.items())
                bar.update(task, stats=stats)
                if not (progress and console.is_terminal):
                    say(f"step {step}/{cfg.steps} {stats}")
            if step % cfg.checkpoint_every == 0:
                checkpoint(last, elapsed_before + time.monotonic() - t0)
            bar.update(task, completed=step)
    seconds = elapsed_before + time.monotonic() - t0
    if step < cfg.steps:
        say(f"stopped at step {step}/{cfg.steps}: max_minutes = {cfg.max_minutes} reached")
    checkpoint(last, seconds)
    export = cfg.path(cfg.export) if cfg.export else out_dir / f"{cfg.name}.safetensors"
    model = TinyHyperprior(net.to("cpu"), meta={
        "trained": f"semzip train-lic ({cfg.name})", "steps": step, "seconds": round(seconds),
        "lambda": cfg.loss.mse, "crop": cfg.data.crop, "batch_size": cfg.data.batch_size,
        "data": Path(cfg.data.train_dir).name, "losses": {k: w for k, (w, _) in terms.active.items()},
        "dropped_terms": terms.dropped,
    })
    model.save(export)
    exported = TinyHyperprior.from_file(export)  # the fingerprint decoders will see (fp16-stored weights)
    say(f"exported {export} ({export.stat().st_size / 1e6:.2f} MB, fingerprint {exported.fingerprint}) "
        f"after {step} steps in {seconds / 60:.1f} min")
    return TrainResult(step, ckpt, export, terms.dropped, last, seconds)
