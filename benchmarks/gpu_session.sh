#!/usr/bin/env bash
# One GPU lease in one command: benchmarks/gpu.sh (time-boxed to BENCH_S seconds), then
# benchmarks/gpu_science.sh in what is left of BUDGET_S, so the whole fits a 10-minute
# device command with room to copy results back. Run again in the same OUT_DIR on the same
# machine, the science part resumes its runs from their checkpoints.
#
# Usage: bash benchmarks/gpu_session.sh NPZ_PATH BENCH_OUT SCIENCE_OUT [BUDGET_S] [--config.x=y ...]
#   BENCH_S (default 300): time box of gpu.sh; 0 skips it (a science-only rerun).
#   EPOCHS (default 10): epochs of gpu.sh's JAX and PyTorch end-to-end runs.
#   The --config overrides go to the comparison (e.g. --config.compare.seeds=0).
set -uo pipefail
usage='usage: bash benchmarks/gpu_session.sh NPZ_PATH BENCH_OUT SCIENCE_OUT [BUDGET_S] [--config.x=y ...]'
npz="${1:?$usage}"
bench_out="${2:?$usage}"
science_out="${3:?$usage}"
budget="${4:-540}"
shift $(( $# < 4 ? $# : 4 ))
here="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

if (( ${BENCH_S:-300} > 0 )); then
  # timeout signals its whole process group, so no benchmark outlives its box.
  EPOCHS="${EPOCHS:-10}" timeout --signal=TERM --kill-after=10 "${BENCH_S:-300}" \
    bash "$here/gpu.sh" "$npz" "$bench_out"
  echo "gpu.sh: exit $?, $(elapsed) s (124: stopped by its ${BENCH_S:-300} s box)"
fi
# The comparison gets what is left, less 45 s for its runs' checkpoints and the report.
left=$(( budget - $(elapsed) - 45 ))
if (( left < 60 )); then
  echo "gpu_science.sh: skipped, only ${left} s left of ${budget} s"
  exit 0
fi
SCIENCE_TIMEOUT_S="$left" bash "$here/gpu_science.sh" "$npz" "$science_out" "$@"
echo "gpu_science.sh: exit $?, session $(elapsed) s of ${budget} s"
