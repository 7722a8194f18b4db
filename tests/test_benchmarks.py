"""The benchmarks still run against the current APIs (no timing is asserted)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import xla_env

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_step_benchmark_runs_and_prints_both_ratios():
  env = xla_env.env(1)
  out = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'steps.py'), '--model=resnet20',
       '--width=0.25', '--image_size=16', '--batch_size=16', '--rounds=1'],
      env=env, check=True, capture_output=True, text=True, timeout=600).stdout
  assert 'scoring / forward throughput:' in out
  assert 'train step time, exits / no exits:' in out


def test_loop_benchmark_runs_and_prints_its_json():
  env = xla_env.env(1)
  out = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'loop.py'), '--rounds=1',
       '--steps_per_call=2', '--epochs=2', '--json'],
      env=env, check=True, capture_output=True, text=True, timeout=900).stdout
  result = json.loads(out.strip().splitlines()[-1])
  for key in ('loop_over_step', 'eval_over_forward', 'step_over_plain_flax',
              'start_to_first_step_s', 'platform'):
    assert key in result, key
  assert result['platform'] == 'cpu' and result['loop_over_step'] > 0


def test_concurrent_runs_benchmark_runs_and_prints_its_json():
  env = xla_env.env(1)
  out = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'concurrent_runs.py'), '--runs=2',
       '--epochs=2', '--json'],
      env=env, check=True, capture_output=True, text=True, timeout=900).stdout
  result = json.loads(out.strip().splitlines()[-1])
  assert result['runs'] == 2 and result['epochs'] == 2 and result['devices'] == 1
  assert result['throughput_gain'] == pytest.approx(
      2 * result['one_run_s'] / result['runs_at_once_s'], rel=0.01)


NPZ = ROOT.parent / 'shared' / 'data' / 'cifar10' / 'cifar10_jpeg.npz'


@pytest.mark.skipif(not NPZ.exists(), reason=f'the CIFAR-10 JPEG copy is not at {NPZ}')
def test_gpu_science_recipe_runs_concurrently_without_tensorflow(tmp_path):
  # As on the GPU machine: no TensorFlow in the comparison or in any of its runs.
  shim = tmp_path / 'no_tensorflow'
  shim.mkdir()
  (shim / 'sitecustomize.py').write_text(
      "import sys\nsys.modules['tensorflow'] = None\nsys.modules['tensorflow_datasets'] = None\n")
  env = xla_env.env(1)
  env.update(PYTHONPATH=os.pathsep.join([str(shim), str(ROOT)]), SCIENCE_TIMEOUT_S='900',
             PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get('PATH', '')]))
  out = tmp_path / 'science'
  # The recipe shrunk to a CPU: a tiny network on a slice, 2 epochs; the cost-matched run
  # matches random's (on 2 epochs EEPrune's scoring pass costs more than it saves).
  proc = subprocess.run(
      ['bash', str(ROOT / 'benchmarks' / 'gpu_science.sh'), str(NPZ), str(out),
       '--config.model.name=resnet20', '--config.model.width=0.125',
       '--config.model.dtype=float32', '--config.train.num_epochs=2', '--config.prune.epoch=1',
       '--config.data.train_split=train[:1024]', '--config.data.eval_split=test[:500]',
       '--config.train.batch_size=128', '--config.train.eval_batch_size=250',
       '--config.compare.methods=random,eeprune_dynamic,cost_matched',
       '--config.compare.cost_reference=random', '--config.compare.seeds=0',
       '--config.compare.parallel=2'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'compare: exit 0' in proc.stdout
  assert '## Against training less' in proc.stdout  # the section, printed
  report = (out / 'report.md').read_text()
  assert '3 of 3 runs finished' in report, report[:2000]
  for name in ('random_f0.5_s0', 'eeprune_dynamic_f0.5_s0', 'cost_matched_f0.5_s0'):
    assert (out / 'runs' / name / 'summary.json').exists(), name


def test_host_pipeline_benchmark_smoke_prints_its_json():
  env = xla_env.env(1)
  env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')])
  out = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'host_pipeline.py'), '--smoke', '--json'],
      env=env, check=True, capture_output=True, text=True, timeout=600).stdout
  result = json.loads(out.strip().splitlines()[-1])
  for key in ('tfdata_over_reference', 'grain_over_reference', 'grain_bytes_read_at_half',
              'startup_4n_over_n_tfdata', 'startup_4n_over_n_grain',
              'resume_late_over_early_tfdata', 'resume_late_over_early_grain', 'platform'):
    assert key in result, key
  assert result['platform'] == 'cpu'
  # Only kept records are read: 24 of 48 at 50% (plus fixed metadata reads).
  assert 0 < result['grain_bytes_read_at_half'] < 0.9
