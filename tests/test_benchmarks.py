"""The benchmarks still run against the current APIs (no timing is asserted)."""

import json
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


def test_loop_benchmark_runs_and_prints_its_json():
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'loop.py'), '--rounds=1',
       '--steps_per_call=2', '--epochs=2', '--json'],
      env=env, check=True, capture_output=True, text=True, timeout=900).stdout
  result = json.loads(out.strip().splitlines()[-1])
  for key in ('loop_over_step', 'eval_over_forward', 'step_over_plain_flax',
              'start_to_first_step_s', 'platform'):
    assert key in result, key
  assert result['platform'] == 'cpu' and result['loop_over_step'] > 0
