"""``semzip train-lic``: train semzip's tiny hyperprior LIC model from a TOML config (resumable).

    semzip train-lic --config configs/lic-tiny.toml              rate-distortion training (lambda*MSE + bpp)
    semzip train-lic --config configs/lic-semantic.toml          semantic-perceptual fine-tuning
    semzip train-lic --config configs/lic-tiny.toml --resume     continue from out_dir/checkpoint

The lead registers it with ``app.command(name="train-lic")(train_lic_command)``; ``python -m
semzip.cli.train`` runs it stand-alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semzip.cli.console import App, alias, err, friendly, out
from semzip.errors import InvalidInputError


@friendly
def train_lic_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML training config (see configs/lic-*.toml).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in the run folder.")] = False,
    steps: Annotated[int | None, typer.Option(help="Override the config's total number of steps.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Override the wall-clock limit (0: none).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or auto (overrides the config).")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Where to write the trained weights (.safetensors; overrides the config's export).",
        show_default=False)] = None,
    run_dir: Annotated[Path | None, typer.Option(
        help="Checkpoint and log folder (overrides the config's out_dir).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Override the random seed.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace the weights file if it exists.")] = False,
    export: Annotated[Path | None, typer.Option("--export", hidden=True)] = None,  # older spelling of --output
    out_dir: Annotated[Path | None, typer.Option("--out-dir", hidden=True)] = None,  # older spelling of --run-dir
) -> None:
    """Train semzip's tiny hyperprior LIC (rate-distortion or semantic-perceptual loss) from a TOML config."""
    from semzip.train.config import load_config
    from semzip.train.lic import train_lic

    export = alias(output, export, "-o/--output", "--export")
    out_dir = alias(run_dir, out_dir, "--run-dir", "--out-dir")
    cfg = load_config(config)
    for name, value in (("steps", steps), ("max_minutes", max_minutes), ("device", device), ("seed", seed)):
        if value is not None:
            setattr(cfg, name, value)
    if out_dir is not None:
        cfg.out_dir = str(out_dir.resolve())
    if export is not None:
        cfg.export = str(export.resolve())
    weights = cfg.path(cfg.export) if cfg.export else cfg.path(cfg.out_dir) / f"{cfg.name}.safetensors"
    if weights.exists() and not (force or resume):  # checked before training, not after hours of it
        raise InvalidInputError(f"{weights} exists; pass --force to replace it (or -o elsewhere)")
    result = train_lic(cfg, resume=resume, say=lambda m: err.print(m, highlight=False, markup=False))
    stats = " ".join(f"{k}={v:.4g}" for k, v in result.last.items())
    out.print(f"{result.step} steps in {result.seconds / 60:.1f} min; {stats}; weights: {result.export}",
              highlight=False)


def main() -> None:
    """Stand-alone entry point (``python -m semzip.cli.train``)."""
    app = App(add_completion=False, pretty_exceptions_enable=False)
    app.command(name="train-lic")(train_lic_command)
    app()


if __name__ == "__main__":
    main()
