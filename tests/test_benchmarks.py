"""The benchmarks still run against the current APIs (no timing is asserted)."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_step_benchmark_runs_and_prints_both_ratios():
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'steps.py'), '--model=resnet20',
       '--width=0.25', '--image_size=16', '--batch_size=16', '--rounds=1'],
      env=env, check=True, capture_output=True, text=True, timeout=600).stdout
  assert 'scoring / forward throughput:' in out
  assert 'train step time, exits / no exits:' in out
