"""Every config file loads and passes the config checks, and so does every run a compare
config plans (a typo in a config that only a GPU runs would otherwise surface there)."""

import pathlib
import runpy

import pytest

from eeprune_jax import compare
from eeprune_jax import config_checks
from eeprune_jax import methods

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / 'configs').glob('*.py'))
PRESETS = {'loop_benchmark.py': ('cpu', 'gpu', 'smoke')}


def load(path: pathlib.Path, tmp_path: pathlib.Path, preset: str | None):
  config = runpy.run_path(str(path))['get_config'](*([preset] if preset else []))
  if config.data.source == 'npz':  # the check wants the file to exist
    config.data.npz_path = str(tmp_path / 'images.npz')
    (tmp_path / 'images.npz').write_bytes(b'')
  return config


@pytest.mark.parametrize('path, preset', [
    (p, preset) for p in CONFIGS for preset in PRESETS.get(p.name, (None,))],
    ids=lambda v: getattr(v, 'name', v))
def test_config_file_passes_the_checks(path, preset, tmp_path):
  config = load(path, tmp_path, preset)
  if 'compare' not in config:
    config_checks.validate(config)
    return
  specs = compare.plan_runs(config.compare)
  assert specs
  for spec in specs:
    matched = methods.get(compare.entries()[spec.method].method).matches_cost
    config_checks.validate(compare.run_config(config, spec, 0.6 if matched else None))


def test_gpu_science_config_plans_the_issue_12_comparison(tmp_path):
  config = load(pathlib.Path(CONFIGS[0]).parent / 'compare_cifar10_gpu.py', tmp_path, None)
  names = [s.name for s in compare.plan_runs(config.compare)]
  assert len(names) == 14 and names[-2:] == ['cost_matched_f0.5_s0', 'cost_matched_f0.5_s1']
  assert compare.cost_reference(config.compare) == 'eeprune_mid'
  assert compare.parse_parallel(config.compare) == (7, 0.0, 30.0)
