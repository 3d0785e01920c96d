#!/usr/bin/env bash
# Build the COCO caption adapter for semzip's caption language model: `semzip text train` on the benchmark's
# training split (captions 1500-2999 of ../shared/data/coco_captions_val2017_dev.txt; captions 0-1499 are the
# test split of benchmarks/captions.py and are never trained on), settings in configs/text-adapter-coco.toml.
# Writes models/coco-captions.adapter (its run folder, with checkpoints and result.json, beside it).
# Takes ~10 min on 2 quiet CPU cores (about 2 min per epoch; the best is epoch 2, the run stops after epoch 4),
# many times longer when other jobs share the cores; --resume continues an interrupted run.
#
# Usage: scripts/build_coco_adapter.sh [--resume] [extra 'semzip text train' options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
DATA=../shared/data/coco_captions_val2017_dev.txt
[ -f "$DATA" ] || { echo "error: $DATA not found" >&2; exit 2; }
mkdir -p models
sed -n '1501,3000p' "$DATA" > models/coco-train-split.txt
[ "$(wc -l < models/coco-train-split.txt)" -eq 1500 ] || { echo "error: expected 3000 captions in $DATA" >&2; exit 2; }
exec "$PY" -m semzip.cli text train models/coco-train-split.txt -o models/coco-captions.adapter \
  --config configs/text-adapter-coco.toml --force "$@"
