"""The benchmarks still run against the current APIs: each with `--smoke`, every path once
at the least size (no timing is asserted; the timeouts only catch hangs)."""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import xla_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
NPZ = ROOT.parent / 'shared' / 'data' / 'cifar10' / 'cifar10_jpeg.npz'
TFDS_DIR = ROOT.parent / 'shared' / 'data' / 'tfds'
HANG_S = 300  # a smoke run takes seconds to a minute on a loaded 2-core CPU


def _env() -> dict[str, str]:
  """One CPU device, compiled at level 0 (smoke runs are compile-bound; see xla_env)."""
  return xla_env.env(1, optimization_level=xla_env.COMPILE_BOUND_LEVEL)


def _smoke(script: str, *args: str) -> str:
  """The stdout of `benchmarks/<script> --smoke ARGS` on one CPU device."""
  env = _env()
  env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')])
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / script), '--smoke', *args], env=env,
      capture_output=True, text=True, timeout=HANG_S)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _last_json(out: str) -> dict:
  return json.loads(out.strip().splitlines()[-1])


def test_step_benchmark_runs_and_prints_both_ratios():
  out = _smoke('steps.py')
  for label in ('scoring / forward throughput:', 'train step time, exits / no exits:'):
    ratio = re.search(re.escape(label) + r'\s+([\d.]+)', out)
    assert ratio and float(ratio.group(1)) > 0, (label, out)


def test_loop_benchmark_runs_and_prints_its_json():
  result = _last_json(_smoke('loop.py', '--json'))
  for key in ('loop_over_step', 'eval_over_forward', 'step_over_plain_flax',
              'start_to_first_step_s', 'start_to_first_step_cold_cache_s',
              'breakdown_time_over_step', 'platform'):
    assert key in result, key
  assert result['platform'] == 'cpu' and result['preset'] == 'smoke'
  for key in ('loop_over_step', 'eval_over_forward', 'step_over_plain_flax'):
    assert result[key] > 0, key


def test_concurrent_runs_benchmark_runs_and_prints_its_json():
  result = _last_json(_smoke('concurrent_runs.py', '--json'))
  # The 'smoke' preset of configs/loop_benchmark.py: 2 runs at once of 2 epochs.
  assert result['runs'] == 2 and result['epochs'] == 2 and result['devices'] == 1
  assert result['throughput_gain'] == pytest.approx(
      2 * result['one_run_s'] / result['runs_at_once_s'], rel=0.01)


def test_cpu_step_loops_benchmark_prints_every_form():
  out = _smoke('cpu_step_loops.py')
  for form in ('one by one', 'fori_loop', 'scan', 'unrolled'):
    ratio = re.search(rf'^\s+{form}\s+[\d.]+ images/s\s+([\d.]+) x one by one$', out, re.M)
    assert ratio and float(ratio.group(1)) > 0, (form, out)


@pytest.mark.skipif(not (TFDS_DIR / 'cifar10').exists(),
                    reason=f'the TFDS CIFAR-10 copy is not in {TFDS_DIR}')
def test_input_pipeline_benchmark_prints_both_backends_against_the_step():
  out = _smoke('input_pipeline.py', f'--data_dir={TFDS_DIR}')
  rows = {l.split()[0]: l.split() for l in out.splitlines()
          if l.startswith(('input[', 'train resnet8'))}
  assert set(rows) == {'input[device]', 'input[tfdata]', 'train'}, out
  for name in ('input[device]', 'input[tfdata]'):
    assert float(rows[name][-1]) > 0, rows[name]  # input / train


@pytest.mark.skipif(importlib.util.find_spec('torch') is None,
                    reason='PyTorch is not installed (the reference is optional)')
@pytest.mark.skipif(not NPZ.exists(), reason=f'the CIFAR-10 JPEG copy is not at {NPZ}')
def test_pytorch_reference_prints_its_json():
  result = _last_json(_smoke('pytorch_reference.py', f'--npz_path={NPZ}', '--json'))
  for key in ('eager_step_examples_per_s', 'train_examples_per_s', 'eval_examples_per_s',
              'run_seconds', 'final_test_accuracy', 'device'):
    assert key in result, key
  assert result['epochs'] == 1 and result['train_examples_per_s'] > 0


@pytest.mark.skipif(not NPZ.exists(), reason=f'the CIFAR-10 JPEG copy is not at {NPZ}')
def test_gpu_science_recipe_runs_concurrently_without_tensorflow(tmp_path):
  # As on the GPU machine: no TensorFlow in the comparison or in any of its runs.
  shim = tmp_path / 'no_tensorflow'
  shim.mkdir()
  (shim / 'sitecustomize.py').write_text(
      "import sys\nsys.modules['tensorflow'] = None\nsys.modules['tensorflow_datasets'] = None\n")
  env = _env()
  env.update(PYTHONPATH=os.pathsep.join([str(shim), str(ROOT)]), SCIENCE_TIMEOUT_S='300',
             PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get('PATH', '')]))
  out = tmp_path / 'science'
  # The recipe shrunk to a CPU: the narrowest network at 8x8 on 256 images, 2 epochs (the
  # runs' compilations are most of the time); the cost-matched run matches random's (on 2
  # epochs EEPrune's scoring pass costs more than it saves).
  proc = subprocess.run(
      ['bash', str(ROOT / 'benchmarks' / 'gpu_science.sh'), str(NPZ), str(out),
       '--config.model.name=resnet8', '--config.model.width=0.125',
       '--config.model.dtype=float32', '--config.data.image_size=8',
       '--config.train.num_epochs=2', '--config.prune.epoch=1',
       '--config.data.train_split=train[:256]', '--config.data.eval_split=test[:100]',
       '--config.train.batch_size=64', '--config.train.eval_batch_size=100',
       '--config.compare.methods=random,eeprune_dynamic,cost_matched',
       '--config.compare.cost_reference=random', '--config.compare.seeds=0',
       '--config.compare.parallel=2'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_S + 120)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'compare: exit 0' in proc.stdout
  assert '## Against training less' in proc.stdout  # the section, printed
  report = (out / 'report.md').read_text()
  assert '3 of 3 runs finished' in report, report[:2000]
  for name in ('random_f0.5_s0', 'eeprune_dynamic_f0.5_s0', 'cost_matched_f0.5_s0'):
    assert (out / 'runs' / name / 'summary.json').exists(), name


def test_host_pipeline_benchmark_smoke_prints_its_json():
  result = _last_json(_smoke('host_pipeline.py', '--json'))
  for key in ('tfdata_over_reference', 'grain_over_reference', 'grain_bytes_read_at_half',
              'startup_4n_over_n_tfdata', 'startup_4n_over_n_grain',
              'resume_late_over_early_tfdata', 'resume_late_over_early_grain', 'platform'):
    assert key in result, key
  assert result['platform'] == 'cpu'
  # Only kept records are read: 24 of 48 at 50% (plus fixed metadata reads).
  assert 0 < result['grain_bytes_read_at_half'] < 0.9
