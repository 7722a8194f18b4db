#!/usr/bin/env bash
# GPU benchmarks of docs/benchmarks.md. Needs JAX with CUDA and this repo (no TensorFlow):
# data come from the CIFAR-10 JPEG .npz through the device-resident backend. PyTorch is
# optional: without it the PyTorch reference is skipped, saying so.
# Usage: bash benchmarks/gpu.sh NPZ_PATH [OUT_DIR]
# EPOCHS (default 20) sets the epochs of the JAX and PyTorch end-to-end runs alike.
set -euo pipefail
npz="${1:?usage: bash benchmarks/gpu.sh NPZ_PATH [OUT_DIR]}"
out="${2:-gpu_bench}"
epochs="${EPOCHS:-20}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c 'import jax; print(jax.__version__, jax.devices())' | tee "$out/devices.txt"
# 1. The loop against its bare step, the step against a plain Flax step, eval against a
#    forward pass, start to first step (cold/warm compilation cache): ResNet-18, bf16,
#    batch 512, EPOCHS epochs of CIFAR-10 (configs/loop_benchmark.py:gpu).
#    loop.py's process and the run it starts hold the GPU at once: 0.4 of its memory each.
XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 python benchmarks/loop.py --preset=gpu --npz_path="$npz" --epochs="$epochs" --json 2>&1 \
  | grep -v -E '^(W|I)[0-9]{4}' | tee "$out/loop.txt"
# 2. The same recipe as a plain PyTorch loop (eager, bf16 autocast, channels_last).
if python -c 'import torch' 2>/dev/null; then
  python benchmarks/pytorch_reference.py --npz_path="$npz" --epochs="$epochs" --json 2>&1 \
    | tee "$out/pytorch.txt"
  python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
last = lambda f: json.loads(open(f'{out}/{f}').read().strip().splitlines()[-1])
jax_, torch_ = last('loop.txt'), last('pytorch.txt')
print(f"card: {jax_['device_kind']} / {torch_['device']}")
print(f"bare step vs PyTorch eager step: {jax_['bare_step_examples_per_s'] / torch_['eager_step_examples_per_s']:.2f}x  (target >= 1.4)")
print(f"end to end (train + eval, {torch_['epochs']} epochs): {torch_['run_seconds'] / jax_['run_train_eval_s']:.2f}x PyTorch's speed "
      f"({jax_['run_train_eval_s']:.1f} s vs {torch_['run_seconds']:.1f} s; target >= 1.3)")
print(f"final test accuracy: {jax_['final_test_accuracy']:.4f} vs {torch_['final_test_accuracy']:.4f}")
PY
else
  echo "PyTorch not installed: reference skipped." | tee "$out/pytorch.txt"
fi
# 3. Step overheads of the paper's networks (scoring vs forward, exits vs none).
for model in resnet50 mobilenet_v3_large; do
  python benchmarks/steps.py --model="$model" --width=1.0 --dtype=bfloat16 \
    --batch_size=512 --rounds=20 2>&1 | grep -v -E '^(W|I)[0-9]{4}' | tee -a "$out/steps.txt"
done
# 4. Runs at once (compare.parallel) against one run alone: 5 ResNet-18 runs of 5 epochs.
python benchmarks/concurrent_runs.py --preset=gpu --npz_path="$npz" --runs=5 --epochs=5 \
  --json 2>&1 | grep -v -E '^(W|I)[0-9]{4}' | tee "$out/concurrent_runs.txt"
