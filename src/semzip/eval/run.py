"""`semzip eval`: run codecs over a dataset at several rate points, measure, and write results and a report.

Output folder layout::

    results.json           everything: dataset checksum, per-codec CompressAI-shaped results, per-image values,
                           unavailable metrics/codecs with reasons, BD-rates against the anchor codec
    results.csv            one row per (codec, rate point): bpp, bytes and the mean of every metric
    per_image.csv          one row per (codec, rate point, image)
    codecs/<codec>.json    CompressAI's JSON shape alone, for overlaying published curves
    rd_<metric>.png|.svg   rate-distortion plots
    report.html            self-contained report (tables, inline SVG plots, thumbnails)
    cache/                 one JSON (+ a thumbnail strip) per finished (codec, rate point): a re-run reuses
                           them when the dataset checksum, parameters and requested metrics match
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from semzip.data.datasets import Dataset, load_dataset
from semzip.errors import InvalidInputError
from semzip.eval.baselines import CollectionEval, EvalCodec, RatePoint, eval_codec
from semzip.eval.metrics import Metric, evaluate, get_metric
from semzip.format import atomic_write

CACHE_VERSION = 1
DEFAULT_CODECS = ("jpeg", "webp", "avif", "collection")
DEFAULT_METRICS = ("psnr", "ms-ssim", "lpips", "dists", "fid", "kid", "clip", "clip-text")
THUMB_IMAGES = 4
THUMB_HEIGHT = 72


@dataclass
class EvalSummary:
    """What a run did: the results file, and how many rate points were computed or reused from the cache."""

    out: Path
    results: dict
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped_codecs: dict[str, str] = field(default_factory=dict)


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _jsonable(x):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    return x


def thumb_strip(images: Sequence[np.ndarray], height: int = THUMB_HEIGHT) -> bytes:
    """A JPEG of the images side by side at ``height`` px (report thumbnails; never full-size images)."""
    tiles = []
    for a in images:
        im = Image.fromarray(a)
        w = max(1, round(im.width * height / im.height))
        tiles.append(im.resize((w, height), Image.Resampling.LANCZOS))
    pad = 3
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + pad * (len(tiles) - 1), height), (255, 255, 255))
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + pad
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


def _cache_usable(cached: dict, checksum: str, point: RatePoint, metrics: Sequence[Metric],
                  expected: dict[str, str | None]) -> bool:
    """A cached point is reused when dataset, parameters and requested metrics match, and no metric that
    was unavailable then can be measured now (e.g. its weights were installed since)."""
    if cached.get("version") != CACHE_VERSION or cached.get("dataset_checksum") != checksum:
        return False
    if cached.get("params") != point.params:
        return False
    got = cached.get("metrics", {})
    for m in metrics:
        entry = got.get(m.name)
        if entry is None:
            return False
        if "unavailable" in entry and expected[m.name] is None:
            return False
    return True


def run_eval(
    dataset: str | os.PathLike | Dataset,
    out: str | os.PathLike,
    codecs: Sequence[str] = DEFAULT_CODECS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    captions: str | os.PathLike | None = None,
    encoder: str = "thumbnail",
    device: str = "cpu",
    anchor: str | None = "jpeg",
    limit: int | None = None,
    metric_options: dict | None = None,
    collection_points: Sequence[tuple[int, int]] | None = None,
    qualities: dict[str, Sequence[int]] | None = None,
    generator: str | None = None,
    progress: bool = True,
    report: bool = True,
) -> EvalSummary:
    """Evaluate ``codecs`` on ``dataset`` with ``metrics``; writes results, plots and report under ``out``."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, captions=captions, limit=limit)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / "cache"
    cache_dir.mkdir(exist_ok=True)
    if not codecs:
        raise InvalidInputError("give at least one codec")
    if not metrics:
        raise InvalidInputError("give at least one metric")

    opts = {"device": device, "encoder": encoder, **(metric_options or {})}
    metric_objs: list[Metric] = []
    for name in metrics:
        m = get_metric(name, **opts)
        if m.name not in {x.name for x in metric_objs}:
            metric_objs.append(m)
    availability = {m.name: m.available() for m in metric_objs}

    codec_objs: list[EvalCodec] = []
    for spec in codecs:
        c = eval_codec(spec, encoder=encoder, device=device, generator=generator)
        if isinstance(c, CollectionEval) and collection_points is not None:
            c.points = tuple(collection_points)
        if qualities and hasattr(c, "qualities"):
            # "compressai=1,2" sets every CompressAI codec; "compressai:mbt2018=1,2" one architecture
            for key in (c.name, c.name.partition(":")[0]):
                if key in qualities:
                    c.qualities = tuple(qualities[key])
                    break
        codec_objs.append(c)
    for key in qualities or {}:
        if not any(key in (c.name, c.name.partition(":")[0]) for c in codec_objs if hasattr(c, "qualities")):
            named = ", ".join(c.name for c in codec_objs if hasattr(c, "qualities")) or "none"
            raise InvalidInputError(f"qualities given for {key!r}, which is not a codec of this run with quality "
                                    f"levels (those: {named})")

    images = ds.load_all()
    captions_list = ds.captions
    expected = {m.name: (availability[m.name][1] if not availability[m.name][0] else m.check(images, captions_list))
                for m in metric_objs}
    summary = EvalSummary(out_dir, {})
    checksum = ds.checksum
    n_thumb = min(THUMB_IMAGES, len(images))
    atomic_write(cache_dir / "originals.jpg", thumb_strip(images[:n_thumb]))

    plan: list[tuple[EvalCodec, RatePoint]] = []
    for c in codec_objs:
        ok, why = c.available()
        if not ok:
            summary.skipped_codecs[c.name] = why
            continue
        pts = c.points_for(len(ds)) if isinstance(c, CollectionEval) else c.rate_points()
        plan += [(c, p) for p in pts]

    points: dict[str, list[dict]] = {c.name: [] for c in codec_objs if c.name not in summary.skipped_codecs}
    from semzip.progress import progress_bar

    with progress_bar(len(plan), "evaluating rate points", enabled=progress) as advance:
        for c, p in plan:
            key = f"{c.name}/{p.label}"
            advance.describe(key)
            cdir = cache_dir / _safe(c.name)
            cfile = cdir / f"{_safe(p.label)}.json"
            cached = None
            if cfile.is_file():
                try:
                    cached = json.loads(cfile.read_text())
                except (OSError, ValueError):
                    cached = None
            if cached is not None and _cache_usable(cached, checksum, p, metric_objs, expected):
                rec = cached
                summary.reused.append(key)
            else:
                t0 = time.perf_counter()
                run = c.run(ds, images, p, cdir)
                t_codec = time.perf_counter() - t0
                measured = evaluate(metric_objs, images, run.decoded, captions_list)
                cdir.mkdir(parents=True, exist_ok=True)
                thumb = f"{_safe(p.label)}.jpg"
                atomic_write(cdir / thumb, thumb_strip(run.decoded[:n_thumb]))
                rec = {
                    "version": CACHE_VERSION,
                    "codec": c.name,
                    "label": p.label,
                    "params": p.params,
                    "dataset_checksum": checksum,
                    "bpp": run.bpp,
                    "total_bytes": run.total_bytes,
                    "bytes_per_image": run.bytes_per_image,
                    "bpp_per_image": run.bpp_per_image,
                    "extra": run.extra,
                    "metrics": measured,
                    "seconds": {"codec": round(t_codec, 3), "metrics": round(time.perf_counter() - t0 - t_codec, 3)},
                    "thumb": f"cache/{_safe(c.name)}/{thumb}",
                }
                atomic_write(cfile, json.dumps(_jsonable(rec), indent=1).encode())
                summary.computed.append(key)
            points[c.name].append(rec)
            advance(1)

    results = _assemble(ds, codec_objs, metric_objs, availability, points, summary, anchor)
    summary.results = results
    atomic_write(out_dir / "results.json", json.dumps(_jsonable(results), indent=1).encode())
    _write_csvs(out_dir, ds, results)
    (out_dir / "codecs").mkdir(exist_ok=True)
    for entry in results["codecs"]:
        shaped = {k: entry[k] for k in ("name", "description", "results")}
        atomic_write(out_dir / "codecs" / f"{_safe(entry['name'])}.json", json.dumps(_jsonable(shaped), indent=1).encode())
    if report:
        from semzip.eval.report import write_report

        write_report(out_dir, results)
    return summary


def _assemble(ds: Dataset, codec_objs, metric_objs, availability, points, summary: EvalSummary, anchor) -> dict:
    from semzip._version import __version__
    from semzip.eval.bdrate import bd_table

    unavailable: dict[str, str] = {}
    for m in metric_objs:
        ok, why = availability[m.name]
        if not ok:
            unavailable[m.name] = why
            continue
        reasons = {r["metrics"].get(m.name, {}).get("unavailable") for recs in points.values() for r in recs}
        reasons.discard(None)
        if reasons:
            unavailable[m.name] = min(reasons)
    measured = [m for m in metric_objs if m.name not in unavailable]

    codec_entries = []
    for c in codec_objs:
        if c.name not in points:
            continue
        recs = sorted(points[c.name], key=lambda r: r["bpp"])
        res: dict[str, list] = {"bpp": [r["bpp"] for r in recs]}
        for m in measured:
            key = "value" if m.set_level else "mean"
            res[m.name] = [r["metrics"][m.name].get(key) for r in recs]
        codec_entries.append({
            "name": c.name,
            "description": c.description,
            "results": res,
            "points": [{
                "label": r["label"], "params": r["params"], "bpp": r["bpp"], "total_bytes": r["total_bytes"],
                "bytes_per_image": r["bytes_per_image"], "bpp_per_image": r["bpp_per_image"],
                "extra": r.get("extra", {}), "seconds": r.get("seconds"), "thumb": r.get("thumb"),
                "per_image": {m.name: r["metrics"][m.name]["per_image"] for m in measured if not m.set_level},
                "set_level": {m.name: {k: v for k, v in r["metrics"][m.name].items()}
                              for m in measured if m.set_level},
            } for r in recs],
        })

    bd: dict[str, dict] = {}
    names = [e["name"] for e in codec_entries]
    if anchor and anchor in names and len(names) > 1:
        for m in measured:
            curves = {e["name"]: (e["results"]["bpp"], e["results"][m.name]) for e in codec_entries}
            bd[m.name] = {"anchor": anchor, "method": "akima",
                          "table": bd_table(curves, anchor, m.higher_is_better)}

    return {
        "semzip_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": {**ds.describe(), "names": ds.names},
        "dataset_checksum": ds.checksum,
        "bpp": "true encoded bytes x 8 / pixels (image codecs: mean over images; collection: whole archive / "
               "total pixels)",
        "metrics": {m.name: {**m.describe(), **({"unavailable": unavailable[m.name]} if m.name in unavailable else {})}
                    for m in metric_objs},
        "unavailable_metrics": unavailable,
        "unavailable_codecs": dict(summary.skipped_codecs),
        "codecs": codec_entries,
        "bd": bd,
        "run": {"computed": list(summary.computed), "reused": list(summary.reused)},
    }


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _write_csvs(out_dir: Path, ds: Dataset, results: dict) -> None:
    measured = [n for n in results["metrics"] if n not in results["unavailable_metrics"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["codec", "point", "bpp", "total_bytes", *measured])
    for e in results["codecs"]:
        for i, p in enumerate(e["points"]):
            w.writerow([e["name"], p["label"], _fmt(p["bpp"]), p["total_bytes"],
                        *[_fmt(e["results"][m][i]) for m in measured]])
    atomic_write(out_dir / "results.csv", buf.getvalue().encode())

    per = [m for m in measured if not results["metrics"][m]["set_level"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["codec", "point", "image", "bpp", *per])
    for e in results["codecs"]:
        for p in e["points"]:
            for j, name in enumerate(ds.names):
                bpp = p["bpp_per_image"][j] if p["bpp_per_image"] else p["bpp"]
                w.writerow([e["name"], p["label"], name, _fmt(bpp), *[_fmt(p["per_image"][m][j]) for m in per]])
    atomic_write(out_dir / "per_image.csv", buf.getvalue().encode())
