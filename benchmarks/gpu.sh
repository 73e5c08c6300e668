#!/usr/bin/env bash
# Every GPU measurement of the throughput work, in one run on one CUDA device (about 15 minutes on
# an H100 / H200), written to docs/benchmarks/ (or $OUT). PEAK: the device's bf16 dense TFLOP/s
# (H100 / H200: 989; A100: 312). Needs the package's requirements; nothing is downloaded.
#
#     bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/benchmarks}
PEAK=${PEAK:-989}
PY=${PYTHON:-python}
mkdir -p "$OUT"
KIND=$($PY -c "import re, torch; print(re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name().lower()).strip('-'))")

$PY benchmarks/sync_check.py | tee "$OUT/sync-check-$KIND.txt" || echo "sync_check: more host syncs than expected"
# paper scale, eager; then compiled DiT and channels-last ResNet-18
$PY benchmarks/benchmark.py --device cuda --peak-tflops "$PEAK" --out "$OUT"
$PY benchmarks/benchmark.py --device cuda --peak-tflops "$PEAK" --out "$OUT" --compile --channels-last \
    --tag=-fast --only finetune_cached generate_batched validate
# our fine-tuning step against the reference's loop
$PY benchmarks/finetune_step.py --device cuda --shapes dit-s2 dit-xl2 --rounds 3 --steps 10 --compile \
    --out "$OUT/finetune-step-$KIND.json"
# grouped seeds (vmap and loop) against one run at a time, the default's nets and the presets' nets
$PY benchmarks/group_validation.py --device cuda --json "$OUT/group-$KIND.json"
$PY benchmarks/group_validation.py --device cuda --archs convnet resnetap10 resnet18 --sizes 224 \
    --width-factor 1.0 --seeds 3 --epochs 2 --evaluations 1 --json "$OUT/group-224-$KIND.json"
# the full-table estimate of every preset from the measured throughput
$PY benchmarks/estimate.py --benchmark "$OUT/benchmark-$KIND.json" --out "$OUT/$KIND.md"
