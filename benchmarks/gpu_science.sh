#!/usr/bin/env bash
# Does pruning beat training less? The CIFAR-10 ResNet-18 comparison of
# configs/compare_cifar10_gpu.py (full data, cost-matched, random, EEPrune paper rule and
# class-balanced, InfoBatch, dynamic EEPrune; 50% at 20 epochs; seeds 0,1), its runs
# concurrent on one GPU, writing OUT_DIR/report.md. Needs JAX and this repo (no
# TensorFlow): the data come from the CIFAR-10 JPEG .npz.
#
# Usage: bash benchmarks/gpu_science.sh NPZ_PATH [OUT_DIR] [--config.x=y ...]
# Time box: after SCIENCE_TIMEOUT_S seconds (default 450) every run stops with a
# checkpoint and the report shows what finished; the same command resumes the rest.
set -euo pipefail
npz="${1:?usage: bash benchmarks/gpu_science.sh NPZ_PATH [OUT_DIR] [--config.x=y ...]}"
out="${2:-gpu_science}"
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c 'import jax; print(jax.__version__, jax.devices())' | tee "$out/devices.txt"
start=$(date +%s)
status=0
timeout --signal=TERM --kill-after=60 "${SCIENCE_TIMEOUT_S:-450}" \
  python -m eeprune_jax.compare --config=configs/compare_cifar10_gpu.py --workdir="$out" \
    --config.data.npz_path="$npz" "$@" 2>&1 | tee -a "$out/compare.log" || status=$?
echo "compare: exit ${status}, $(( $(date +%s) - start )) s" | tee -a "$out/compare.log"
# The report as the runs left it (compare rewrites it after every run; this also covers
# a comparison the time box stopped).
python -m eeprune_jax.compare --config=configs/compare_cifar10_gpu.py --workdir="$out" \
  --config.data.npz_path="$npz" "$@" --report_only >/dev/null
sed -n '/^## Against training less/,/^## Results/p' "$out/report.md"
echo "report: $out/report.md"
