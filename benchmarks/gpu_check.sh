#!/usr/bin/env bash
# The GPU checks in one script (the numbers recorded in the issues came from it):
#   bash benchmarks/gpu_check.sh            # ~6 min on one H100/H200
# It needs torch (+ timm for the cub200 row; geoopt for the reference column) and the repository on
# PYTHONPATH; nothing else from the test extras. Logs go to $OUT (default /tmp/chestlab-gpu).
# The rows, in order:
#   1. tests/test_cuda.py: geometry, the fused training path (parts.points_proxy_term, CHESTLoss) and
#      the trainer on the GPU against float64 on the CPU;
#   2. the CUB-scale CHEST loss step (ms) vs the geoopt reference, with its target line
#      (<= 3 ms, >= 3x faster than the reference): bench_loss.py --scales CUB --device cuda;
#   3. the loss's share of a ViT-S/16 bf16 step (B = 200, target < 5 %): bench_train.py --quick --cub;
#   4. both scales on the GPU, then the CPU target lines (step <= 1.4x its matmuls alone, SOP peak
#      < 300 MiB) on two pinned cores of the (otherwise idle) GPU machine.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-/tmp/chestlab-gpu}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"
echo "== 1. tests/test_cuda.py";              timeout 180 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log" | tail -25
echo "== 2. bench_loss CUB (cuda)";           timeout 90 $PY benchmarks/bench_loss.py --scales CUB --no-hyphc --device cuda --budget 5 2>"$OUT/bench_loss_cub_cuda.err" | tee "$OUT/bench_loss_cub_cuda.md"
echo "== 3. bench_train --quick --cub (cuda)"; timeout 200 $PY benchmarks/bench_train.py --quick --cub --device cuda 2>"$OUT/bench_train.err" | tee "$OUT/bench_train.md"
echo "== 4a. bench_loss (cuda)";              timeout 150 $PY benchmarks/bench_loss.py --device cuda 2>"$OUT/bench_loss_cuda.err" | tee "$OUT/bench_loss_cuda.md"
echo "== 4b. bench_loss (2 CPU cores, quiet)"; timeout 300 taskset -c 0,1 $PY benchmarks/bench_loss.py --threads 2 --budget 6 2>"$OUT/bench_loss_cpu.err" | tee "$OUT/bench_loss_cpu2.md"
tail -n 3 "$OUT"/*.err
