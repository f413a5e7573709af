#!/usr/bin/env bash
# The GPU figures of docs/results.md in one go, in the order issue 15 asks for them: VGG13-BN's step
# against a bare loop and its per-block report, the dashboard's presets as live sessions on CUDA and
# (in the background, one thread each, as the app's kernels run) on the CPU, the session overhead,
# the --tiny reproductions, then tests/test_cuda.py. Each part has a time limit, so one slow part
# leaves the others. Its parts ran on one H200 in two calls of 169 s and 300 s (docs/results.md);
# give the call 10 minutes.
# Run on a machine with a GPU: bash bench/gpu.sh [LOG_DIR]   (PYTHONPATH is set: no install needed;
# python3 is the one that holds a CUDA torch, or set PY)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
LOGS=${1:-test-artifacts}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
(OMP_NUM_THREADS=1 timeout 420 $PY bench/session.py --presets --device cpu --threads 1 --preset-steps 1000 \
  > "$LOGS/presets-cpu.log" 2>&1 &)
timeout 260 $PY bench/paper_scale.py --device cuda --steps 50 --batch 128 --width 64
timeout 150 $PY bench/session.py --presets --device cuda --preset-steps 1000
timeout 60 $PY bench/session.py --device cuda --steps 3000
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py
while pgrep -f "bench/session.py --presets --device cpu" > /dev/null; do sleep 2; done
echo "--- presets on the CPU, one thread each:"
cat "$LOGS/presets-cpu.log"
