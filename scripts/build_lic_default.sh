#!/usr/bin/env bash
# Build the offline default LIC model: semzip's tiny mean-scale hyperprior trained on the 68 offline photos
# in <repo>/../shared/data/train (never Kodak) for at most 15 minutes on 2 CPU threads (configs/lic-tiny.toml),
# exported with its integer z tables to src/semzip/models/weights/lic-tiny.safetensors (~1.6 MB, fp16).
# Then it evaluates the exported model on 4 Kodak images at scales 1, 0.5, 0.25 (evaluation only) and
# prints a markdown table (real bytes: both streams + the 14-byte shape record), with JPEG at the same
# or smaller size for context.
#
# Usage: scripts/build_lic_default.sh [--resume] [extra train-lic options]
#        scripts/build_lic_default.sh --eval-only
# If the weights ever grow over ~3 MB, pass --export ~/.cache/semzip/lic-tiny.safetensors: the loader looks
# there ($SEMZIP_CACHE) when the package ships no weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [ -z "${PYTHON:-}" ] && [ -x /work/venv/bin/python ]; then PY=/work/venv/bin/python; fi
if [ ! -d ../shared/data/train ]; then
  echo "error: ../shared/data/train not found (the offline training photos)" >&2
  exit 2
fi
if [ "${1:-}" != "--eval-only" ]; then
  "$PY" -m semzip.cli.train --config configs/lic-tiny.toml "$@"
fi
[ -d ../shared/data/kodak ] || { echo "no ../shared/data/kodak: skipping the evaluation" >&2; exit 0; }
"$PY" - <<'PYEOF'
import io, time
import numpy as np, torch
from PIL import Image
torch.set_num_threads(2)
from semzip.data.images import load_image
from semzip.models.lic import TinyHyperprior

def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)

def jpeg_at_most(img, nbytes):
    best = None
    for q in range(1, 96):
        buf = io.BytesIO(); Image.fromarray(img).save(buf, "JPEG", quality=q)
        if buf.tell() > nbytes: break
        best = (buf.tell(), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return best

m = TinyHyperprior.default()
print(f"model {m.name} {m.fingerprint}: {m.meta.get('steps')} steps, {m.meta.get('seconds')} s, lambda {m.meta.get('lambda')}")
print("| image | scale | bytes | bpp | PSNR (dB) | JPEG bpp (<= size) | JPEG PSNR | enc s | dec s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
rows = {}
for name in ("kodim01", "kodim05", "kodim15", "kodim23"):
    img = load_image(f"../shared/data/kodak/{name}.png")
    px = img.shape[0] * img.shape[1]
    for scale in (1.0, 0.5, 0.25):
        t = time.perf_counter(); streams, shape = m.compress(img, scale=scale); te = time.perf_counter() - t
        t = time.perf_counter(); out = m.decompress(streams, shape.to_bytes()); td = time.perf_counter() - t
        n = sum(map(len, streams)) + len(shape.to_bytes())
        j = jpeg_at_most(img, n)
        jb, jp = (f"{8 * j[0] / px:.3f}", f"{psnr(img, j[1]):.2f}") if j else ("n/a (q=1 larger)", "-")
        p = psnr(img, out)
        rows.setdefault(scale, []).append((8 * n / px, p))
        print(f"| {name} | {scale} | {n} | {8 * n / px:.3f} | {p:.2f} | {jb} | {jp} | {te:.2f} | {td:.2f} |")
for scale, r in rows.items():
    a = np.array(r)
    print(f"| **mean** | {scale} | | {a[:, 0].mean():.3f} | {a[:, 1].mean():.2f} | | | | |")
PYEOF
