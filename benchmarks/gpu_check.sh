#!/usr/bin/env bash
# The GPU check, as one prepared run on a CUDA machine (issue: CIFAR-10 on CPU or GPU).
#   1. benchmarks/gpu_tutorial.py: the tutorial network, this project's loop against the
#      tutorial's DataLoader-and-PIL path, 1/2/4 concurrent trials per GPU.
#   2. The pipeline itself on the GPU: studies/mnist1d_tpe.yaml with gpus_per_trial 0.25,
#      so four workers share the GPU, each pinned by CUDA_VISIBLE_DEVICES.
#   3. studies/cifar10_resnet.yaml (ResNet-18, bf16, channels-last, crops and flips on the
#      GPU) on a CIFAR-10-format set generated on the spot (nothing is downloaded).
#   4. benchmarks/packing.py (issue 16): K = 1..256 tutorial CNNs packed as one model vs
#      unpacked and fractional-GPU trials, and the CIFAR tutorial study packed vs unpacked
#      (about 6 minutes on an H200; run alone with SECTIONS=4).
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh   (the pipeline's dependencies installed)
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

SECTIONS=${SECTIONS:-1234}  # which numbered sections to run

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)" | tee -a "$OUT/gpu.txt"

if [[ $SECTIONS == *1* ]]; then
echo "== 1. tutorial network: pipeline loop vs DataLoader+PIL"
time $PY benchmarks/gpu_tutorial.py 2>&1 | tee "$OUT/gpu_tutorial.txt"
fi

if [[ $SECTIONS == *2* ]]; then
echo "== 2. mnist1d study, 4 trials sharing the GPU"
time $PY -m pipeline tune studies/mnist1d_tpe.yaml --storage "sqlite:///$OUT/gpu.db" \
    --set device=cuda --set gpus_per_trial=0.25 --workers 4 --n-trials 16 2>&1 | tee "$OUT/mnist1d_gpu.txt" | tail -30
fi

if [[ $SECTIONS == *3* ]]; then
echo "== 3. cifar10_resnet study on generated CIFAR-10-format data"
$PY -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; \
from vision_data import write_cifar10; write_cifar10(Path('/tmp/cifar'), per_batch=4000, test=2000)"
time $PY -m pipeline tune studies/cifar10_resnet.yaml --storage "sqlite:///$OUT/gpu.db" \
    --set task.options.data_dir=/tmp/cifar --set task.options.verify_checksums=false \
    --n-trials 4 --set max_epochs=3 2>&1 | tee "$OUT/resnet_gpu.txt" | tail -30
fi

if [[ $SECTIONS == *4* ]]; then
echo "== 4. trial packing: K trials as one model vs unpacked and fractional-GPU trials"
time $PY benchmarks/packing.py --markdown "$OUT/packing.md" 2>&1 | tee "$OUT/packing.txt"
fi
nvidia-smi --query-gpu=memory.used --format=csv,noheader
