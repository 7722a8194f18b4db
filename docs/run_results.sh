#!/usr/bin/env bash
# The runs behind docs/results.md: CIFAR-10 (shared TFDS copy), half-width ResNet-20.
# Usage: bash docs/run_results.sh [DATA_DIR] [RUNS_DIR]
set -euo pipefail
data_dir="${1:-../shared/data/tfds}"
runs="${2:-runs}"
run() {  # run NAME OVERRIDES...
  local name="$1"; shift
  python -m eeprune_jax.main --config=configs/cifar10_small.py --workdir="$runs/$name" \
    --config.data.data_dir="$data_dir" --config.train.progress_bar=False "$@"
}
run c10_none --config.prune.method=none
run c10_eeprune_mid --config.prune.method=eeprune
run c10_random --config.prune.method=random
# Full data for fewer epochs, at about the cost of the pruned runs (2 + 6 x 0.5 = 5 epochs).
run c10_none_5ep --config.prune.method=none --config.train.num_epochs=5
