"""Bjøntegaard-delta rate for any metric (via the ``bjontegaard`` package) and rate-distortion plots.

BD-rate is the average difference in log-rate between two RD curves at equal quality, in percent:
negative means the test codec needs fewer bits than the anchor for the same quality. The package
interpolates log-rate as a function of quality; for a lower-is-better metric (LPIPS, DISTS, FID) the
quality axis is the negated metric, which keeps "quality increases with rate" and leaves the sign
convention of BD-rate unchanged (negative is still better). ``bd_quality`` is the generalised BD-PSNR:
the average metric difference at equal log-rate, reported so that positive always means the test is better.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from semzip.errors import InvalidInputError


def _curve(rates: Sequence[float], values: Sequence[float], higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(values, dtype=np.float64) * (1.0 if higher_is_better else -1.0)
    if r.shape != q.shape or r.ndim != 1:
        raise InvalidInputError(f"rates and values must be 1-D and of equal length, got {r.shape} and {q.shape}")
    if len(r) < 2:
        raise InvalidInputError("a BD computation needs at least 2 rate points per curve")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))) or np.any(r <= 0):
        raise InvalidInputError("rates must be positive and values finite")
    order = np.argsort(r)
    r, q = r[order], q[order]
    if np.any(np.diff(q) <= 0):
        raise InvalidInputError("quality does not increase strictly with rate along this curve; BD is undefined")
    return r, q


def _bd(fn: str, rate_anchor, value_anchor, rate_test, value_test, higher_is_better, method, min_overlap) -> float:
    import bjontegaard as bd

    ra, qa = _curve(rate_anchor, value_anchor, higher_is_better)
    rt, qt = _curve(rate_test, value_test, higher_is_better)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(getattr(bd, fn)(ra, qa, rt, qt, method=method, require_matching_points=False,
                                     min_overlap=min_overlap))


def bd_rate(rate_anchor: Sequence[float], value_anchor: Sequence[float], rate_test: Sequence[float],
            value_test: Sequence[float], higher_is_better: bool = True, method: str = "akima",
            min_overlap: float = 0.0) -> float:
    """BD-rate in percent of the test curve against the anchor (negative: the test saves bits)."""
    return _bd("bd_rate", rate_anchor, value_anchor, rate_test, value_test, higher_is_better, method, min_overlap)


def bd_quality(rate_anchor: Sequence[float], value_anchor: Sequence[float], rate_test: Sequence[float],
               value_test: Sequence[float], higher_is_better: bool = True, method: str = "akima",
               min_overlap: float = 0.0) -> float:
    """Average metric gain of the test over the anchor at equal log-rate (BD-PSNR for PSNR; positive: better)."""
    return _bd("bd_psnr", rate_anchor, value_anchor, rate_test, value_test, higher_is_better, method, min_overlap)


def bd_table(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], anchor: str,
             higher_is_better: bool = True, method: str = "akima") -> dict[str, dict]:
    """BD-rate and BD-quality of every curve against ``anchor``: {codec: {"bd_rate"|"bd_quality"|"reason"}}."""
    out: dict[str, dict] = {}
    if anchor not in curves:
        return out
    ra, qa = curves[anchor]
    for name, (rt, qt) in curves.items():
        if name == anchor:
            continue
        try:
            br = bd_rate(ra, qa, rt, qt, higher_is_better, method)
            bq = bd_quality(ra, qa, rt, qt, higher_is_better, method)
        except InvalidInputError as exc:
            out[name] = {"reason": str(exc)}
            continue
        if not (math.isfinite(br) and math.isfinite(bq)):
            out[name] = {"reason": "the curves do not overlap in quality or rate"}
        else:
            out[name] = {"bd_rate": br, "bd_quality": bq}
    return out


def rd_plot(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], metric_label: str, path_stem: Path,
            higher_is_better: bool = True, title: str | None = None, axis_label: str | None = None) -> list[Path]:
    """One line per codec, bpp on a log axis; writes ``<stem>.png`` and ``<stem>.svg`` and returns them."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    markers = "osD^v<>ph*"
    for i, (name, (r, q)) in enumerate(curves.items()):
        pts = sorted((a, b) for a, b in zip(r, q) if a > 0 and b is not None and math.isfinite(b))
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)], ms=4, lw=1.4, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (true file bytes, log scale)")
    arrow = "higher is better" if higher_is_better else "lower is better"
    ax.set_ylabel(f"{axis_label or metric_label} ({arrow})")
    ax.set_title(title or f"{metric_label} vs rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [path_stem.with_suffix(".png"), path_stem.with_suffix(".svg")]
    fig.savefig(paths[0])
    with matplotlib.rc_context({"svg.hashsalt": "semzip", "svg.fonttype": "none"}):
        fig.savefig(paths[1], metadata={"Date": None})
    plt.close(fig)
    return paths
