#!/usr/bin/env bash
# GPU performance pass, in one go (about 3-5 minutes on one H100; stops at 8).
#
#   bash benchmarks/gpu.sh                 # ResNet-50, batch 64, fp32 + bf16, peers when installed
#   INSTALL=1 bash benchmarks/gpu.sh       # first: pip install -e .[bench] (needs the internet)
#   bash benchmarks/gpu.sh --batch 128     # any bench_gpu.py option
#
# Prints our tools' throughput as ratios of the raw model's (maximize >= 0.70 of fwd+bwd,
# record_stimuli >= 0.90 of plain inference) and of the peers'. Numbers also go to gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${INSTALL:-0}" = 1 ]; then
    python -m pip install -q -e ".[bench,torchvision]"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: run python benchmarks/bench_gpu.py --device cpu --quick'"
timeout 480 python benchmarks/bench_gpu.py --device cuda --json gpu.json "$@"
