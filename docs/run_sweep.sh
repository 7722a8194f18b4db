#!/usr/bin/env bash
# The pruning-epoch x fraction sweep behind docs/results.md (CIFAR-10, first 10,000 images).
# Usage: bash docs/run_sweep.sh [DATA_DIR] [RUNS_DIR]
set -euo pipefail
data_dir="${1:-../shared/data/tfds}"
runs="${2:-runs}"
sweep() {  # sweep NAME PRUNE_EPOCH FRACTIONS
  python -m eeprune_jax.compare --config=configs/compare_cifar10.py --workdir="$runs/$1" \
    --config.data.data_dir="$data_dir" "--config.data.train_split=train[:10000]" \
    --config.train.progress_bar=False --config.compare.methods=random,eeprune_mid \
    --config.prune.epoch="$2" --config.compare.fractions="$3"
}
sweep sweep_epoch2_f03 2 0.3
sweep sweep_epoch4 4 0.3,0.5
# EEPrune with per-class quotas (prune.class_balanced) at both pruning epochs.
balanced() {  # balanced NAME PRUNE_EPOCH
  python -m eeprune_jax.compare --config=configs/compare_cifar10.py --workdir="$runs/$1" \
    --config.data.data_dir="$data_dir" "--config.data.train_split=train[:10000]" \
    --config.train.progress_bar=False --config.compare.methods=eeprune_mid_balanced \
    --config.prune.epoch="$2" --config.compare.fractions=0.5
}
balanced balanced_epoch2 2
balanced balanced_epoch4 4
