#!/usr/bin/env bash
# One short GPU check: the CUDA tests, a default run on CUDA, and the GPU benchmark figures.
# Usage on a CUDA machine with mlbench's dependencies importable:  bash scripts/gpu_check.sh [OUTDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/mlbench-gpu}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MLBENCH_RESULTS=${MLBENCH_RESULTS:-/tmp/mlbench-gpu-results}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), '| onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -5
echo "== default run on CUDA (digits, all default variants, light stress), backend=gpu"
/usr/bin/time -f "wall %e s" python3 -m mlbench backend=gpu 2>&1 | tail -14
echo "== ResNet-18 (width 64) on digits, CUDA, default variants"
python3 -m mlbench model=resnet train.epochs=10 'variants=[onnx_fp32,half_bf16,structured50_ft]' backend=gpu 2>&1 | tail -9
echo "== benchmarks"
python3 scripts/bench_pipeline.py --cuda --skip-run 2>&1 | tail -4
python3 scripts/bench_bootstrap.py --cuda 2>&1 | tail -4
python3 scripts/bench_stress.py --cuda --skip-run 2>&1 | tail -2
# keep the run summaries (the results folders themselves stay where they are)
i=0; for f in $(ls -t "$MLBENCH_RESULTS"/runs/*/*/summary.json 2>/dev/null | head -2); do cp "$f" "$OUT/summary_$i.json"; i=$((i+1)); done
