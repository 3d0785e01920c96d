"""The evaluation report: RD plots (PNG + SVG) and one self-contained ``report.html``.

The HTML embeds the plots as inline SVG and the thumbnails as base64 JPEG, so it can be mailed or attached
as one file. Thumbnails only (a few images at ~72 px high): the report never holds full-size images.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from semzip.eval.bdrate import rd_plot


def _num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) >= 0.01 or v == 0:
        return f"{v:.{digits}f}"
    return f"{v:.3e}"


def _img(path: Path) -> str:
    if not path.is_file():
        return "<span class=muted>(no thumbnail)</span>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="" src="data:image/jpeg;base64,{data}">'


def _svg_inline(path: Path) -> str:
    text = path.read_text()
    text = re.sub(r"^<\?xml[^>]*>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return text


def write_plots(out_dir: Path, results: dict) -> dict[str, list[Path]]:
    """``rd_<metric>.png|svg`` for each measured metric; returns {metric: [png, svg]}."""
    plots = {}
    for name, info in results["metrics"].items():
        if name in results["unavailable_metrics"]:
            continue
        curves = {e["name"]: (e["results"]["bpp"], e["results"][name]) for e in results["codecs"]}
        if not curves:
            continue
        plots[name] = rd_plot(curves, info["label"], out_dir / f"rd_{re.sub(r'[^a-z0-9]+', '_', name)}",
                              info["higher_is_better"], title=f"{info['label']} — {results['dataset']['name']}",
                              axis_label=name)
    return plots


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:middle}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.muted{color:#777} .bad{color:#a33} code{background:#f5f5f5;padding:0 3px}
.plots{display:flex;flex-wrap:wrap;gap:10px} .plots svg{width:560px;height:auto;border:1px solid #eee}
.thumbs td{padding:2px 6px} .thumbs img{display:block}
"""


def write_report(out_dir: Path, results: dict) -> Path:
    """Write the plots and ``report.html`` under ``out_dir``; returns the HTML path."""
    out_dir = Path(out_dir)
    plots = write_plots(out_dir, results)
    ds = results["dataset"]
    measured = [n for n in results["metrics"] if n not in results["unavailable_metrics"]]
    labels = {n: results["metrics"][n]["label"] for n in results["metrics"]}
    arrows = {n: "↑" if results["metrics"][n]["higher_is_better"] else "↓" for n in results["metrics"]}
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>semzip eval — {html.escape(ds['name'])}</title>",
         f"<style>{_CSS}</style></head><body>",
         f"<h1>semzip eval — {html.escape(ds['name'])}</h1>",
         (f"<div class=muted>{ds['n_images']} images ({html.escape(ds['kind'])} layout), dataset checksum "
          f"<code>{html.escape(ds['checksum'])}</code>; semzip {html.escape(results['semzip_version'])}, "
          f"{html.escape(results['created'])}. bpp = {html.escape(results['bpp'])}.</div>")]

    # --- results table
    h.append("<h2>Results</h2><table><tr><th class=l>codec</th><th class=l>point</th><th>bpp</th><th>bytes</th>")
    h += [f"<th>{html.escape(n)} {arrows[n]}</th>" for n in measured]
    h.append("</tr>")
    for e in results["codecs"]:
        for i, p in enumerate(e["points"]):
            row = [f"<td class=l>{html.escape(e['name'])}</td>" if i == 0 else "<td></td>",
                   f"<td class=l>{html.escape(p['label'])}</td><td>{_num(p['bpp'])}</td><td>{_num(p['total_bytes'])}</td>"]
            row += [f"<td>{_num(e['results'][n][i])}</td>" for n in measured]
            h.append("<tr>" + "".join(row) + "</tr>")
    h.append("</table>")
    if measured:
        h.append("<div class=muted>" + "; ".join(f"<b>{html.escape(n)}</b>: {html.escape(labels[n])}"
                                                   for n in measured) + "</div>")
    if results["codecs"]:
        h.append("<div class=muted>" + "; ".join(f"<b>{html.escape(e['name'])}</b>: {html.escape(e['description'])}"
                                                   for e in results["codecs"]) + "</div>")

    # --- unavailable
    if results["unavailable_metrics"] or results["unavailable_codecs"]:
        h.append("<h2>Not measured here</h2><table><tr><th class=l>what</th><th class=l>why</th></tr>")
        for n, why in results["unavailable_metrics"].items():
            h.append(f"<tr><td class=l>metric <b>{html.escape(n)}</b></td><td class='l bad'>{html.escape(why)}</td></tr>")
        for n, why in results["unavailable_codecs"].items():
            h.append(f"<tr><td class=l>codec <b>{html.escape(n)}</b></td><td class='l bad'>{html.escape(why)}</td></tr>")
        h.append("</table>")

    # --- BD-rate
    if results.get("bd"):
        h.append("<h2>BD-rate (Akima) against "
                 f"{html.escape(next(iter(results['bd'].values()))['anchor'])}</h2>"
                 "<div class=muted>BD-rate: average bit-rate change at equal quality (negative = fewer bits); "
                 "BD-quality: average metric change at equal rate, oriented so positive = better. "
                 "Lower-is-better metrics are negated before interpolation.</div>")
        h.append("<table><tr><th class=l>metric</th><th class=l>codec</th><th>BD-rate %</th><th>BD-quality</th>"
                 "<th class=l>note</th></tr>")
        for n, bd in results["bd"].items():
            for codec, v in bd["table"].items():
                h.append(f"<tr><td class=l>{html.escape(n)}</td><td class=l>{html.escape(codec)}</td>"
                         f"<td>{_num(v.get('bd_rate'), 2)}</td><td>{_num(v.get('bd_quality'))}</td>"
                         f"<td class='l muted'>{html.escape(v.get('reason', ''))}</td></tr>")
        h.append("</table>")

    # --- plots
    if plots:
        h.append("<h2>Rate-distortion curves</h2><div class=plots>")
        h += [_svg_inline(paths[1]) for paths in plots.values()]
        h.append("</div>")

    # --- thumbnails
    h.append("<h2>Original vs decoded (first images, thumbnails)</h2><table class=thumbs>")
    h.append(f"<tr><td class=l><b>original</b></td><td class=l></td><td class=l>{_img(out_dir / 'cache' / 'originals.jpg')}</td></tr>")
    main = measured[0] if measured else None
    for e in results["codecs"]:
        for i, p in enumerate(e["points"]):
            score = f"{main} {_num(e['results'][main][i])}" if main else ""
            h.append(f"<tr><td class=l>{html.escape(e['name']) if i == 0 else ''}</td>"
                     f"<td class=l>{html.escape(p['label'])}<br><span class=muted>{_num(p['bpp'])} bpp<br>"
                     f"{html.escape(score)}</span></td><td class=l>{_img(out_dir / p['thumb']) if p.get('thumb') else ''}</td></tr>")
    h.append("</table>")
    run = results.get("run", {})
    h.append(f"<p class=muted>{len(run.get('computed', []))} rate points computed, {len(run.get('reused', []))} "
             "reused from the cache. Per-image values: results.json, per_image.csv.</p></body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(h), encoding="utf-8")
    return path
