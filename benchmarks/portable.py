"""Decode anywhere: the cross-setting matrix, the rate cost of the integer language model, and its speed.

Run: ``python benchmarks/portable.py`` (about an hour on 2 cores, most of it the float coder's 1,500
captions; ``--rate 300`` for a quicker look). Writes ``benchmarks/results/portable.md`` and ``portable.json``.

1. Matrix. Each golden file of ``tests/data/golden`` (codec-2 caption, lines file, image-text archive with
   LIC stream version 2; collection and sq archives) and, made here with today's float coder, the same
   caption, lines and image-text content as codec-1 files (image-text: codec-1 captions, LIC stream
   version 1) -> decoded in a fresh process under each setting of ``tests/test_portable.py`` -> identical
   (same digest as the native decode), refused (an error, e.g. the caption check), or different.
2. Rate. The 1,500 test captions of ``benchmarks/captions.py`` (COCO captions 0-1499), each coded alone by
   the integer coder (codec 2) and the float coder (codec 1): mean payload bytes, whole-file bytes and
   ideal information (sum of -log2 p over the coded symbols, from the tables the coders used).
3. Speed, side by side in one run: captions per second for encoding and decoding with the integer coder one
   caption at a time (numpy kernel), batched (64 per batch; numpy and torch kernels) and the float coder
   one at a time; the per-token latency of the single path; a fresh-process ``semzip text compress`` of
   one caption (cache warm).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = ROOT.parent / "shared" / "data" / "coco_captions_val2017_dev.txt"
RESULTS = ROOT / "benchmarks" / "results"

CHILD = r"""
import json, sys
from semzip.api import decode_digest
out = {}
for p in sys.argv[1:]:
    try:
        out[p] = decode_digest(p)
    except Exception as exc:  # the outcome is what we measure
        out[p] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""


def decode_under(paths: list[Path], env: dict[str, str], kernel: str) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    full.update(env, SEMZIP_LM_KERNEL=kernel)
    r = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True, text=True,
                       env=full, timeout=900, check=False)
    if r.returncode != 0:
        return {str(p): {"error": f"process failed: {r.stderr.strip().splitlines()[-1:]}"} for p in paths}
    return json.loads(r.stdout.strip().splitlines()[-1])


def float_counterparts(folder: Path) -> list[Path]:
    """The golden contents written by today's float coder (codec 1) and the legacy LIC stream (version 1)."""
    from PIL import Image
    from test_portable import CAPTION, IMAGE_CAPTIONS, LINES, _images

    from semzip.api import caption_coder
    from semzip.codecs.image_text import ImageTextCodec
    from semzip.format import write
    from semzip.models.lic import load_lic

    coder = caption_coder(codec=1)
    single, lines = coder.encode_files([([CAPTION], False, True), (LINES, True, False)])
    (folder / "caption-codec1.smzc").write_bytes(single)
    (folder / "lines-codec1.smzc").write_bytes(lines)

    class LegacyLIC:  # the float hyper-synthesis of LIC stream version 1
        def __init__(self, lic):
            self._lic = lic

        def __getattr__(self, name):
            return getattr(self._lic, name)

        def compress(self, image, scale=1.0):
            return self._lic.compress(image, scale, version=1)

    imgs = _images()
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / f"shape{i}.png")
    codec = ImageTextCodec(LegacyLIC(load_lic("tiny")), coder, scale=1.0)
    enc = codec.compress(imgs, IMAGE_CAPTIONS, names=[f"shape{i}.png" for i in range(3)])
    enc.header.params.update(captioner="sidecar", lic_spec="tiny", language_spec="smollm2-135m")
    write(folder / "image-text-codec1.smz", enc.header, enc.blobs, enc.blocks, enc.names)
    return [folder / "caption-codec1.smzc", folder / "lines-codec1.smzc", folder / "image-text-codec1.smz"]


def matrix(float_files: list[Path]) -> dict:
    from test_portable import FILES, SETTINGS

    paths = [*FILES, *float_files]
    native = decode_under(paths, {}, "numpy")
    rows: dict[str, dict[str, str]] = {p.name: {} for p in paths}
    notes: dict[str, dict[str, list[str]]] = {}
    for setting, (env, kernel) in SETTINGS.items():
        t0 = time.perf_counter()
        got = decode_under(paths, env, kernel)
        for p in paths:
            g, n = got[str(p)], native[str(p)]
            if "error" in g:
                rows[p.name][setting] = "refused"
            elif "error" in n or g != n:
                rows[p.name][setting] = "different"
                notes.setdefault(p.name, {})[setting] = sorted(k for k in g if g.get(k) != n.get(k))
            else:
                rows[p.name][setting] = "identical"
        print(f"  {setting}: {time.perf_counter() - t0:.1f} s", flush=True)
    return {"native": {p.name: native[str(p)] for p in paths}, "rows": rows, "settings": list(SETTINGS),
            "different": notes}


class Recorder:
    """Records the table frequency of every coded symbol (semzip.codecs.text._cost is called once per symbol)."""

    def __init__(self) -> None:
        from semzip.codecs import text

        self.text, self.orig, self.freqs = text, text._cost, []
        text._cost = self._cost

    def _cost(self, freq, precision=24):
        self.freqs.append(int(freq))
        return self.orig(freq, precision)

    def bits(self) -> float:
        import math

        return sum(24 - math.log2(f) for f in self.freqs)

    def close(self) -> None:
        self.text._cost = self.orig


def rate(captions: list[str], coders: tuple[int, ...] = (2, 1), keep: dict | None = None) -> dict:
    from semzip.api import caption_coder

    out = dict(keep or {})
    for name, codec, kernel in (("integer (codec 2)", 2, "torch"), ("float (codec 1)", 1, None)):
        if codec not in coders:
            continue
        coder = caption_coder(codec=codec, kernel=kernel)
        rec = Recorder()
        try:
            t0 = time.perf_counter()
            if codec == 2:
                payloads = coder.compress_many(captions)
            else:
                payloads = []
                for i, c in enumerate(captions):
                    payloads.append(coder.compress(c))
                    if (i + 1) % 100 == 0:
                        print(f"  float coder: {i + 1}/{len(captions)}", flush=True)
            seconds = time.perf_counter() - t0
        finally:
            rec.close()
        files = coder.encode_files([([c], False, False) for c in captions[:200]])  # whole files (layout: +5 B)
        out[name] = {
            "payload_bytes": statistics.fmean(map(len, payloads)),
            "file_bytes": statistics.fmean(map(len, payloads)) + 5,
            "file_bytes_checked": statistics.fmean(map(len, files)) - statistics.fmean(map(len, payloads[:200])),
            "ideal_bits": rec.bits() / len(captions),
            "seconds": seconds,
        }
        print(f"  {name}: {out[name]}", flush=True)
    return out


def speed(captions: list[str], n_single: int, n_float: int) -> dict:
    from semzip.api import caption_coder
    from semzip.codecs.text import IntTextCoder

    res: dict[str, dict[str, float]] = {}

    def run(name: str, coder, texts: list[str], batched: bool) -> None:
        coder.compress_many(texts[:2])  # warm: prompt state, tables, kernels
        t0 = time.perf_counter()
        payloads = coder.compress_many(texts) if batched else [coder.compress(t) for t in texts]
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = coder.decompress_many(payloads) if batched else [coder.decompress(p) for p in payloads]
        dec = time.perf_counter() - t0
        assert back == texts
        tokens = sum(len(coder.symbols(t)[1]) + 1 for t in texts)
        res[name] = {"captions": len(texts), "encode_per_s": len(texts) / enc, "decode_per_s": len(texts) / dec,
                     "decode_ms_per_token": 1000 * dec / tokens, "tokens": tokens}
        print(f"  {name}: {res[name]}", flush=True)

    single = caption_coder(kernel="numpy")
    run("integer, one at a time (numpy kernel)", single, captions[:n_single], False)
    run("integer, batches of 64 (numpy kernel)", IntTextCoder(single.lm, batch_size=64), captions, True)
    torch_coder = caption_coder(kernel="torch")
    run("integer, batches of 64 (torch int8 kernel)", IntTextCoder(torch_coder.lm, batch_size=64), captions, True)
    run("float (codec 1), one at a time", caption_coder(codec=1), captions[:n_float], False)
    return res


def fresh_cli(caption: str, runs: int = 5) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "one.txt"
        src.write_text(caption + "\n", encoding="utf-8")
        semzip = Path(sys.executable).with_name("semzip")
        for i in range(runs + 1):
            t0 = time.perf_counter()
            subprocess.run([str(semzip), "text", "compress", "-q", "-f", str(src)], check=True)
            if i:  # the first run may still convert the model or fill the prompt cache
                times.append(time.perf_counter() - t0)
    return times


def report(res: dict) -> str:
    m, r, s, cli = res["matrix"], res["rate"], res["speed"], res["cli"]
    short = {"native, numpy kernel": "native numpy", "native, torch kernel": "native torch",
             "ATEN_CPU_CAPABILITY=default": "ATEN default", "ATEN_CPU_CAPABILITY=avx2": "ATEN avx2",
             "MKL_CBWR=COMPATIBLE": "MKL_CBWR", "OPENBLAS_CORETYPE=Haswell": "OpenBLAS Haswell",
             "OPENBLAS_CORETYPE=Prescott": "OpenBLAS Prescott", "1 thread": "1 thread", "2 threads": "2 threads"}
    lines = [
        "# Decode anywhere: portability matrix, rate cost and speed of the integer caption model",
        "",
        (f"Generated by `benchmarks/portable.py` on {res['date']} ({res['machine']}). GPU: {res['gpu']}."),
        "",
        "## Matrix: each file decoded in a fresh process under each setting",
        "",
        ("`identical` = the same digest as the native decode (caption text; entropy-decoded integers and "
         "embeddings; LIC integers up to y_hat), `refused` = an error instead of output (the files' checks), "
         "`different` = other output. Codec-2 files use the integer model (the default now); the codec-1 files "
         "are the same content written by today's float coder (and LIC stream version 1)."),
        "",
        "| file | " + " | ".join(short.get(k, k) for k in m["settings"]) + " |",
        "| --- | " + " | ".join("---" for _ in m["settings"]) + " |",
    ]
    for name, row in m["rows"].items():
        lines.append(f"| {name} | " + " | ".join(row[k] for k in m["settings"]) + " |")
    for name, per in m.get("different", {}).items():
        for setting, keys in per.items():
            what = ", ".join(keys)
            extra = (" (the legacy LIC stream's float `mu`, hence `y_hat` and the pixels; its captions decoded)"
                     if keys == ["lic_sha256"] else "")
            lines.append(f"\n`different` for {name} under {setting}: {what}{extra}.")
    i, f = r["integer (codec 2)"], r["float (codec 1)"]
    lines += [
        "",
        f"## Rate: {res['n_rate']} test captions (COCO 0-1499), each coded alone",
        "",
        "| coder | payload B / caption | whole file B | ideal bits / caption | coding time s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, v in r.items():
        lines.append(f"| {name} | {v['payload_bytes']:.3f} | {v['file_bytes']:.3f} | {v['ideal_bits']:.2f} | "
                     f"{v['seconds']:.0f} |")
    lines += [
        "",
        (f"Integer vs float: payload {100 * (i['payload_bytes'] / f['payload_bytes'] - 1):+.2f} %, ideal "
         f"information {100 * (i['ideal_bits'] / f['ideal_bits'] - 1):+.2f} % (target: at most +1 %)."),
        "",
        "## Speed, one run, same machine",
        "",
        "| path | captions | encode captions/s | decode captions/s | decode ms/token |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, v in s.items():
        lines.append(f"| {name} | {v['captions']} | {v['encode_per_s']:.2f} | {v['decode_per_s']:.2f} | "
                     f"{v['decode_ms_per_token']:.1f} |")
    fl = s["float (codec 1), one at a time"]
    best = s["integer, batches of 64 (torch int8 kernel)"]
    lines += [
        "",
        (f"Batched integer (torch kernel) vs today's float path: encode {best['encode_per_s'] / fl['encode_per_s']:.1f}x, "
         f"decode {best['decode_per_s'] / fl['decode_per_s']:.1f}x (target at least 5x, aim 20x)."),
        "",
        (f"Fresh-process `semzip text compress` of one caption, cache warm ({len(cli)} runs after a first one): "
         f"median {statistics.median(cli):.2f} s (min {min(cli):.2f}, max {max(cli):.2f}); target at most 2 s."),
        "",
        ("Timings are from a shared 2-core virtual machine: other jobs can slow any row; the rows of one table "
         "were measured in the same run."),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1500, help="test captions for the rate comparison")
    ap.add_argument("--speed", type=int, default=256, help="captions for the batched speed rows")
    ap.add_argument("--single", type=int, default=48, help="captions for the one-at-a-time integer row")
    ap.add_argument("--float", type=int, default=32, help="captions for the float row")
    ap.add_argument("--only", choices=["matrix", "speed", "rate"], action="append",
                    help="run only these parts (repeatable); the others are kept from portable.json")
    ap.add_argument("--rate-codecs", type=int, nargs="+", default=[2, 1],
                    help="text codecs the rate part measures (the others' rows are kept from portable.json)")
    args = ap.parse_args()
    parts = args.only or ["matrix", "speed", "rate"]
    caps = [c for c in DATA.read_text(encoding="utf-8").split("\n") if c]
    test = caps[:1500]
    path = RESULTS / "portable.json"
    res: dict = json.loads(path.read_text()) if path.is_file() and args.only else {}
    res.update({"date": str(datetime.date.today()),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                "gpu": "not measured: no device machine was lent to this task"})
    if "matrix" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            print("matrix", flush=True)
            res["matrix"] = matrix(float_counterparts(Path(tmp)))
    if "speed" in parts:
        print("speed", flush=True)
        step = max(1, len(test) // args.speed)
        res["speed"] = speed(test[::step][: args.speed], args.single, args.float)
        res["cli"] = fresh_cli(test[0])
    if "rate" in parts:
        print("rate", flush=True)
        res["rate"] = rate(test[: args.rate], tuple(args.rate_codecs), res.get("rate"))
        res["n_rate"] = args.rate
    path.write_text(json.dumps(res, indent=1) + "\n")
    if all(k in res for k in ("matrix", "speed", "rate", "cli")):
        (RESULTS / "portable.md").write_text(report(res))
        print(report(res))


if __name__ == "__main__":
    main()
