"""The `semzip eval` command (registered in the main CLI with ``app.command(name="eval")(eval_command)``).

Also usable alone: ``python -m semzip.cli.eval --dataset DIR ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from semzip.cli.console import App, alias, check_device, styled
from semzip.cli.console import friendly as _friendly
from semzip.cli.console import out as _out
from semzip.errors import InvalidInputError


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _parse_points(s: str | None) -> list[tuple[int, int]] | None:
    if not s:
        return None
    pts = []
    for part in _split(s.replace(";", ",")):
        try:
            a, k = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise InvalidInputError(f"collection points are ATOMSxSPARSITY pairs like 4x1,8x2; got {part!r}") from None
        pts.append((a, k))
    return pts


def _parse_qualities(s: str | None) -> dict[str, list[int]] | None:
    if not s:
        return None
    out: dict[str, list[int]] = {}
    for part in s.split(";"):
        if not part.strip():
            continue
        name, sep, qs = part.partition("=")
        if not sep:
            raise InvalidInputError(f"--qualities takes CODEC=Q1,Q2,...;CODEC=... ; got {part!r}")
        try:
            out[name.strip().lower()] = [int(q) for q in _split(qs)]
        except ValueError:
            raise InvalidInputError(f"qualities must be integers, got {qs!r}") from None
    return out


@_friendly
def eval_command(
    dataset: Annotated[Path, typer.Option(help="Folder of images (Kodak / CLIC layouts recognised) or a CSV of image paths [,caption].")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Output folder: results.json/csv, RD plots, report.html, cache/ (default: "
        "eval_out).", show_default=False)] = None,
    codecs: Annotated[str, typer.Option(help="Comma list: jpeg, webp, avif, collection, image-text, compressai[:ARCH] (any zoo image architecture, e.g. compressai:cheng2020-attn).")] = "jpeg,webp,avif,collection",
    metrics: Annotated[str, typer.Option(help="Comma list: psnr, ssim, ms-ssim, lpips (=lpips-alex), lpips-vgg, dists, fid, kid, clip, clip-text.")] = "psnr,ms-ssim,lpips,clip",
    captions: Annotated[Path | None, typer.Option(help="CSV image,caption for clip-text (matched on file names).")] = None,
    encoder: Annotated[str, typer.Option(help="Encoder for the collection codec and the clip metrics (thumbnail = offline colour layout, reported as thumbnail-sim; hf:PATH for CLIP).")] = "thumbnail",
    generator: Annotated[str | None, typer.Option(help="Generator that renders the collection codec's embeddings (e.g. stable-unclip:DIR for OpenCLIP ViT-H-14); default: the encoder space's offline renderer, else the codec is reported not measured.")] = None,
    anchor: Annotated[str, typer.Option(help="Codec that BD-rates are computed against.")] = "jpeg",
    device: Annotated[str, typer.Option(help="cpu or cuda: where the metrics' models run.")] = "cpu",
    limit: Annotated[int | None, typer.Option(help="Use only the first N images (quick runs).")] = None,
    qualities: Annotated[str | None, typer.Option(help="Override quality sweeps, e.g. 'jpeg=1,10,50;webp=0,20;compressai=1,2' (compressai:ARCH=... for one architecture).")] = None,
    collection_points: Annotated[str | None, typer.Option(help="Collection rate points as ATOMSxSPARSITY, e.g. 2x1,4x1,8x2.")] = None,
    lpips_backbone: Annotated[Path | None, typer.Option(help="torchvision AlexNet/VGG16 checkpoint for LPIPS/DISTS (else $SEMZIP_ALEXNET_WEIGHTS / $SEMZIP_VGG16_WEIGHTS / torch hub cache).")] = None,
    inception_weights: Annotated[Path | None, typer.Option(help="torch-fidelity InceptionV3 weights for FID/KID (else $SEMZIP_INCEPTION_WEIGHTS / hub cache).")] = None,
    fid_patch: Annotated[int, typer.Option(help="FID/KID patch size in px (HiFiC: 256, plus a grid shifted by half).")] = 256,
    progress: Annotated[bool, typer.Option(help="Show progress: a bar on a terminal, else a line every 10 s ($SEMZIP_PROGRESS_INTERVAL).")] = True,
    force: Annotated[bool, typer.Option("--force", "-f", help="Allow OUTPUT inside the dataset folder (or holding it).")] = False,
    out_: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,  # the older spelling of --output
) -> None:
    """Run codecs over a dataset at several rates, measure them, and write results, RD plots and report.html.

    Finished (codec, rate point) results are cached in OUTPUT/cache and reused by a re-run.
    """
    from semzip.eval.run import run_eval
    from semzip.outputs import check_apart

    check_device(device)  # before any work, as everywhere
    out = alias(output, out_, "-o/--output", "--out", default=Path("eval_out"))
    check_apart(out, (dataset, captions), force, "folder")  # never write among the images without --force

    opts = {"backbone": str(lpips_backbone) if lpips_backbone else None,
            "inception_weights": str(inception_weights) if inception_weights else None, "patch": fid_patch}
    s = run_eval(dataset, out, codecs=_split(codecs), metrics=_split(metrics), captions=captions, encoder=encoder,
                 device=device, anchor=anchor, limit=limit, metric_options=opts,
                 collection_points=_parse_points(collection_points), qualities=_parse_qualities(qualities),
                 generator=generator, progress=progress)
    r = s.results
    measured = [n for n in r["metrics"] if n not in r["unavailable_metrics"]]
    t = Table(title=f"{r['dataset']['name']}: {r['dataset']['n_images']} images")
    for col in ("codec", "point", "bpp", *measured):
        t.add_column(col, justify="left" if col in ("codec", "point") else "right")
    for e in r["codecs"]:
        for i, p in enumerate(e["points"]):
            vals = [e["results"][m][i] for m in measured]
            t.add_row(e["name"], p["label"], f"{p['bpp']:.4g}", *["–" if v is None else f"{v:.4g}" for v in vals])
    _out.print(t)
    for n, why in {**r["unavailable_metrics"], **r["unavailable_codecs"]}.items():
        _out.print(styled(("not measured", "yellow"), f" {n}: {why}"))
    _out.print(f"{len(s.computed)} points computed, {len(s.reused)} reused; report: {Path(out) / 'report.html'}")


app = App(add_completion=False, pretty_exceptions_enable=False)
app.command(name="eval")(eval_command)


def main() -> None:
    typer.run(eval_command)


if __name__ == "__main__":
    main()
