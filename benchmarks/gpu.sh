#!/usr/bin/env bash
# GPU benchmarks of docs/benchmarks.md. Needs JAX with CUDA and this repo (no TensorFlow):
# data come from the CIFAR-10 JPEG .npz through the device-resident backend.
# Usage: bash benchmarks/gpu.sh NPZ_PATH [OUT_DIR] [EPOCHS]
set -euo pipefail
npz="${1:?usage: bash benchmarks/gpu.sh NPZ_PATH [OUT_DIR] [EPOCHS]}"
out="${2:-gpu_bench}"
epochs="${3:-30}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c 'import jax; print(jax.__version__, jax.devices())' | tee "$out/devices.txt"
# Train and scoring step throughput, ratios against a plain forward / a no-exit network.
for model in resnet50 mobilenet_v3_large; do
  for dtype in float32 bfloat16; do
    python benchmarks/steps.py --model="$model" --width=1.0 --dtype="$dtype" \
      --batch_size=512 --rounds=20 2>&1 | grep -v -E '^(W|I)[0-9]{4}' | tee -a "$out/steps.txt"
  done
done
# Input pipeline vs train step (device backend only: no TensorFlow on the GPU box).
python benchmarks/input_pipeline.py --npz_path="$npz" --backends=device --steps=200 \
  --batch_size=512 --width=1.0 2>&1 | grep -v -E '^(W|I)[0-9]{4}' | tee "$out/input.txt"
# One full EEPrune CIFAR-10 run (ResNet-50, 50% pruned at epoch epochs/10) with its ledger.
python -m eeprune_jax.main --config=configs/cifar10.py --workdir="$out/cifar10_eeprune" \
  --config.data.source=npz --config.data.npz_path="$npz" --config.data.name=cifar10 \
  --config.model.dtype=bfloat16 --config.train.num_epochs="$epochs" \
  --config.train.warmup_epochs=2 --config.prune.epoch=$((epochs / 10)) \
  --config.train.progress_bar=False
python -m eeprune_jax.inspect --workdir="$out/cifar10_eeprune" | tee "$out/cifar10_inspect.txt"
