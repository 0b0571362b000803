#!/usr/bin/env bash
# One short GPU check: the update cycle's CPU-vs-CUDA figure, the default run on 2 CPU threads
# and on CUDA (same machine, back to back), the CIFAR-10-size ResNet-18 run's stage times on CUDA,
# `mlbench cycle` on CUDA, and the CUDA tests.
# Usage on a CUDA machine with mlbench's dependencies importable:  bash scripts/gpu_check.sh [OUTDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/mlbench-gpu}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MLBENCH_RESULTS=${MLBENCH_RESULTS:-/tmp/mlbench-gpu-results}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), '| onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(), '| cpus', __import__('os').cpu_count())"
echo "== update cycle: one digits period; ResNet-18 update on 2 CPU threads vs CUDA"
python3 scripts/bench_cycle.py --cuda --skip-run --repeats 2 2>&1 | grep -v "^  period" | tail -6
echo "== default run: 2 CPU threads, then CUDA (backend=gpu), back to back"
/usr/bin/time -f "wall %e s (cpu, 2 threads)" python3 -m mlbench device=cpu backend.threads=2 2>&1 | tail -3
/usr/bin/time -f "wall %e s (cuda)" python3 -m mlbench backend=gpu 2>&1 | tail -3
python3 - <<'EOF' 2>&1 | tee "$OUT/stages.txt"
import glob, json
for f in sorted(glob.glob("/tmp/mlbench-gpu-results/runs/*/*/summary.json"))[-2:]:
    s = json.load(open(f))
    st = {k: round(v, 2) for k, v in s.get("stages", {}).items() if isinstance(v, (int, float))}
    print(s["run"]["env"]["device"], "wall_s", round(s["run"]["wall_s"], 1), "startup", st.get("startup"), st)
EOF
echo "== CIFAR-10-size run on CUDA: ResNet-18 (width 64), 50,000 train, 10,000 test, 1 epoch; stage times and the plan"
timeout 420 python3 scripts/bench_scale.py --device cuda --width 64 --train 50000 --tests 10000 2>&1 | tail -22 | tee "$OUT/scale_cuda.txt"
echo "== mlbench cycle on CUDA (default: 12 periods, 3 policies)"
/usr/bin/time -f "wall %e s" python3 -m mlbench cycle 2>&1 | tail -4
echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider -n 0 tests/test_cuda.py 2>&1 | tail -3
i=0; for f in $(ls -t "$MLBENCH_RESULTS"/runs/*/*/summary.json 2>/dev/null | head -3); do cp "$f" "$OUT/summary_$i.json"; i=$((i+1)); done
