"""Cost and portability of the tiny LIC's integer-exact hyper-synthesis (stream version 2) vs the float one (1).

1. Rate/quality/time: each Kodak image (evaluation only) at scale 1.0 / 0.5 / 0.25 is coded through the codec
   API with ``version=1`` (float32 h_s) and ``version=2`` (integer h_s); bpp counts both streams and the shape
   record; PSNR on the full-size RGB image; encode/decode seconds (best of ``--repeat``).
2. Portability: the streams are decoded again in fresh processes under ATEN_CPU_CAPABILITY=default|avx2,
   MKL_CBWR=COMPATIBLE and OMP_NUM_THREADS=1|2. For version 2 the decoded integers (scale indices, residuals,
   y_hat) must be identical everywhere, and the pixels (float g_s) are compared with the native decode:
   how many values differ and by how much. For version 1 it counts the decodes refused by the index checksum.

    .venv/bin/python benchmarks/lic_integer.py            # writes benchmarks/results/lic_integer.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
IMAGES = ("kodim01", "kodim03", "kodim05", "kodim15", "kodim19", "kodim23")
SCALES = (1.0, 0.5, 0.25)
ENVS = {
    "native (AVX512, 2 threads)": {},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=COMPATIBLE + default": {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all of: default + COMPATIBLE + oneDNN AVX2 + 1 thread": {
        "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OMP_NUM_THREADS": "1"},
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def child(folder: Path) -> None:
    """Decode every stream in ``folder``; write pixels and integer digests (or the error) next to them."""
    import torch

    from semzip.errors import SemzipError
    from semzip.models.lic import LICShape, load_lic

    lic = load_lic("tiny")
    out = {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(), "items": {}}
    for meta in sorted(folder.glob("*.json")):
        rec = json.loads(meta.read_text())
        streams = [bytes.fromhex(h) for h in rec["streams"]]
        shape = LICShape.from_bytes(bytes.fromhex(rec["shape"]))
        try:
            digest = lic.decode_integers(streams, shape).digest()
            img = lic.decompress(streams, shape)
            np.save(folder / f"{meta.stem}.{os.environ['LIC_TAG']}.npy", img)
            out["items"][meta.stem] = {"digest": digest}
        except SemzipError as exc:
            out["items"][meta.stem] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))


def run_env(folder: Path, tag: str, env_update: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_NUM_THREADS") and k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    env.update(env_update, LIC_TAG=tag)
    r = subprocess.run([sys.executable, __file__, "--child", str(folder)], capture_output=True, text=True,
                       env=env, timeout=1800, check=False)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lic_integer"))
    args = ap.parse_args()
    if args.child:
        child(Path(args.child))
        return
    import torch

    from semzip.data.images import load_image
    from semzip.models.lic import load_lic

    torch.set_num_threads(2)
    lic = load_lic("tiny")
    lic.int_hyper  # noqa: B018 - build the integer h_s once, outside the timings
    tmp = Path(tempfile.mkdtemp(prefix="lic_int_"))
    rows = []
    for name in IMAGES:
        img = load_image(KODAK / f"{name}.png")
        px = img.shape[0] * img.shape[1]
        for scale in SCALES:
            row = {"image": name, "scale": scale}
            for v in (1, 2):
                te, td = [], []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    streams, shape = lic.compress(img, scale=scale, version=v)
                    te.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    out = lic.decompress(streams, shape.to_bytes())
                    td.append(time.perf_counter() - t)
                n = sum(map(len, streams)) + len(shape.to_bytes())
                row[f"v{v}"] = {"bytes": n, "bpp": 8 * n / px, "psnr": psnr(img, out), "enc_s": min(te),
                                "dec_s": min(td)}
                key = f"{name}_{scale}_v{v}"
                (tmp / f"{key}.json").write_text(json.dumps({"streams": [s.hex() for s in streams],
                                                             "shape": shape.to_bytes().hex()}))
                np.save(tmp / f"{key}.here.npy", out)
            rows.append(row)
            a, b = row["v1"], row["v2"]
            print(f"{name} {scale}: bpp {a['bpp']:.4f} -> {b['bpp']:.4f}, PSNR {a['psnr']:.3f} -> {b['psnr']:.3f}, "
                  f"dec {a['dec_s']:.3f} -> {b['dec_s']:.3f} s", flush=True)

    envs = {}
    for i, (label, upd) in enumerate(ENVS.items()):
        envs[label] = run_env(tmp, f"e{i}", upd)
        print(f"decoded under {label}: capability {envs[label]['capability']}, threads {envs[label]['threads']}",
              flush=True)
    ref_label = next(iter(ENVS))
    ref = envs[ref_label]["items"]
    port = {}
    for i, label in enumerate(ENVS):
        items = envs[label]["items"]
        v1_refused = sorted(k for k, r in items.items() if k.endswith("_v1") and "error" in r)
        v2_err = sorted(k for k, r in items.items() if k.endswith("_v2") and "error" in r)
        v2_same = all(items[k].get("digest") == ref[k].get("digest") for k in items if k.endswith("_v2"))
        diff_vals = diff_px = total_vals = 0
        max_diff = 0
        for k in items:
            if not k.endswith("_v2") or "error" in items[k]:
                continue
            a = np.load(tmp / f"{k}.e0.npy").astype(np.int16)
            b = np.load(tmp / f"{k}.e{i}.npy").astype(np.int16)
            d = np.abs(a - b)
            total_vals += d.size
            diff_vals += int((d > 0).sum())
            diff_px += int((d.max(axis=2) > 0).sum())
            max_diff = max(max_diff, int(d.max()))
        port[label] = {
            "capability": envs[label]["capability"], "threads": envs[label]["threads"],
            "v1_refused": len(v1_refused), "v1_streams": sum(k.endswith("_v1") for k in items),
            "v2_errors": v2_err, "v2_integers_identical_to_native": v2_same,
            "v2_pixel_values_differing": diff_vals, "v2_pixels_differing": diff_px, "v2_values": total_vals,
            "v2_max_abs_diff": max_diff,
        }
        print(label, json.dumps(port[label]), flush=True)

    md = [("| image | scale | bytes v1 / v2 | bpp float h_s (v1) | bpp integer h_s (v2) | rate change | PSNR v1 (dB) | PSNR v2 (dB) | "
          "enc s v1 / v2 | dec s v1 / v2 |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        a, b = r["v1"], r["v2"]
        md.append(f"| {r['image']} | {r['scale']} | {a['bytes']} / {b['bytes']} | {a['bpp']:.4f} | {b['bpp']:.4f} | "
                  f"{100 * (b['bytes'] / a['bytes'] - 1):+.2f}% | {a['psnr']:.3f} | {b['psnr']:.3f} | "
                  f"{a['enc_s']:.3f} / {b['enc_s']:.3f} | {a['dec_s']:.3f} / {b['dec_s']:.3f} |")
    for scale in SCALES:
        sel = [r for r in rows if r["scale"] == scale]
        b1 = np.mean([r["v1"]["bpp"] for r in sel])
        b2 = np.mean([r["v2"]["bpp"] for r in sel])
        p1 = np.mean([r["v1"]["psnr"] for r in sel])
        p2 = np.mean([r["v2"]["psnr"] for r in sel])
        md.append(f"| **mean** | {scale} | | {b1:.4f} | {b2:.4f} | {100 * (b2 / b1 - 1):+.2f}% | {p1:.3f} | {p2:.3f} | | |")
    md += ["", ("| decoded under | torch capability | threads | v1 streams refused | v2 integers identical | "
           "v2 pixel values differing (of all) | v2 pixels differing | max abs diff |"),
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, p in port.items():
        md.append(f"| {label} | {p['capability']} | {p['threads']} | {p['v1_refused']} / {p['v1_streams']} | "
                  f"{'yes' if p['v2_integers_identical_to_native'] and not p['v2_errors'] else 'NO'} | "
                  f"{p['v2_pixel_values_differing']} / {p['v2_values']} | {p['v2_pixels_differing']} | "
                  f"{p['v2_max_abs_diff']} |")
    text = "\n".join(md)
    print(text)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "portability": port, "model": lic.fingerprint,
                                                    "torch": torch.__version__,
                                                    "load_average": os.getloadavg()}, indent=1))
    out.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
