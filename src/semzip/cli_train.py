"""``semzip train-lic``: train semzip's tiny hyperprior LIC model from a TOML config (resumable).

    semzip train-lic --config configs/lic-tiny.toml              rate-distortion training (lambda*MSE + bpp)
    semzip train-lic --config configs/lic-semantic.toml          semantic-perceptual fine-tuning
    semzip train-lic --config configs/lic-tiny.toml --resume     continue from out_dir/checkpoint

The lead registers it with ``app.command(name="train-lic")(train_lic_command)``; ``python -m
semzip.cli_train`` runs it stand-alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semzip.clitools import err, friendly, out


@friendly
def train_lic_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML training config (see configs/lic-*.toml).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in out_dir.")] = False,
    steps: Annotated[int | None, typer.Option(help="Override the config's total number of steps.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Override the wall-clock limit (0: none).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or auto (overrides the config).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Override the checkpoint/log folder.")] = None,
    export: Annotated[Path | None, typer.Option(help="Where to write the trained weights (.safetensors).")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the random seed.")] = None,
) -> None:
    """Train semzip's tiny hyperprior LIC (rate-distortion or semantic-perceptual loss) from a TOML config."""
    from semzip.train.config import load_config
    from semzip.train.lic import train_lic

    cfg = load_config(config)
    for name, value in (("steps", steps), ("max_minutes", max_minutes), ("device", device), ("seed", seed)):
        if value is not None:
            setattr(cfg, name, value)
    if out_dir is not None:
        cfg.out_dir = str(out_dir.resolve())
    if export is not None:
        cfg.export = str(export.resolve())
    result = train_lic(cfg, resume=resume, say=lambda m: err.print(m, highlight=False, markup=False))
    stats = " ".join(f"{k}={v:.4g}" for k, v in result.last.items())
    out.print(f"{result.step} steps in {result.seconds / 60:.1f} min; {stats}; weights: {result.export}",
              highlight=False)


def main() -> None:
    """Stand-alone entry point (``python -m semzip.cli_train``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(name="train-lic")(train_lic_command)
    app()


if __name__ == "__main__":
    main()
