"""The loop before issue 10 (commit 29df89f), timed per epoch for docs/benchmarks.md.

  git worktree add /tmp/eeprune_before 29df89f
  PYTHONPATH=/tmp/eeprune_before python benchmarks/loop_before.py /tmp/loop_before_workdir

Runs the old `train.train_and_evaluate` on `configs/loop_benchmark.py:cpu` (from this
checkout) and prints one JSON line: the training phase's and the eval pass's examples/s,
medians over the epochs after the first, as `benchmarks/loop.py` reports them for the
current loop. The old loop records no per-epoch times, so its `_Run.evaluate` is wrapped:
an epoch's training runs from the end of the previous evaluation to the start of its own.
"""

import json
import os
import sys
import time

import numpy as np

from eeprune_jax import train  # the old package, first on PYTHONPATH

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import loop_benchmark  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(workdir: str) -> None:
  """Runs the old loop and prints its figures."""
  marks = []
  evaluate = train._Run.evaluate  # pylint: disable=protected-access

  def timed(self, state, ledger):
    start = time.time()
    out = evaluate(self, state, ledger)
    marks.append((start, time.time(), out['eval_count']))
    return out

  train._Run.evaluate = timed  # pylint: disable=protected-access
  config = loop_benchmark.get_config('cpu')
  hist = train.train_and_evaluate(config, workdir)['history']
  b = config.train.batch_size
  train_ips = [hist[k]['steps'] * b / (marks[k][0] - marks[k - 1][1])
               for k in range(1, len(marks))]
  eval_ips = [count / (end - start) for start, end, count in marks[1:]]
  print(json.dumps({'loop_examples_per_s': float(np.median(train_ips)),
                    'eval_examples_per_s': float(np.median(eval_ips))}))


if __name__ == '__main__':
  main(sys.argv[1])
