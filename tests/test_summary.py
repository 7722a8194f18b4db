"""Tests of the `python -m eeprune_jax.summary` command."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from eeprune_jax import summary
from eeprune_jax.config_base import base_config

REPO = pathlib.Path(__file__).resolve().parents[1]
KEYS = {'model', 'stem', 'width', 'image_shape', 'num_classes', 'exit_blocks', 'params',
        'exit_head_params', 'macs_per_exit', 'final_macs', 'forward_macs'}


def test_describe_in_process():
  config = base_config()
  config.model.name, config.model.width, config.model.exits = 'resnet20', 0.25, '2,5'
  out = summary.describe(config, num_classes=10)
  assert KEYS <= set(out)
  assert out['exit_blocks'] == [2, 5] and out['num_classes'] == 10
  assert len(out['exit_head_params']) == 2 == len(out['macs_per_exit'])
  assert out['macs_per_exit'][0] < out['macs_per_exit'][1] < out['final_macs']
  assert out['forward_macs'] > out['final_macs']
  json.dumps(out)


def test_command_prints_one_json_object(tmp_path):
  (tmp_path / 'cfg.py').write_text(
      'from eeprune_jax.config_base import base_config\n'
      'def get_config():\n'
      '  c = base_config()\n'
      '  c.model.width = 0.25\n'
      '  return c\n')
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [str(REPO), os.environ.get('PYTHONPATH', '')]), 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run(
      [sys.executable, '-m', 'eeprune_jax.summary', f'--config={tmp_path / "cfg.py"}',
       '--config.model.name=mobilenet_v3_small', '--config.model.exits=0,2',
       '--num_classes=7'],
      env=env, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=300)
  out = json.loads(proc.stdout)
  assert KEYS <= set(out)
  assert out['model'] == 'mobilenet_v3_small' and out['num_classes'] == 7
  assert out['exit_blocks'] == [0, 2] and out['image_shape'][:2] == [32, 32]


def _tfds_config(name, data_dir):
  config = base_config()
  config.data.source, config.data.name, config.data.data_dir = 'tfds', name, str(data_dir)
  config.model.name, config.model.width = 'resnet20', 0.25
  return config


def test_tfds_data_set_need_not_be_prepared(tmp_path):
  """The class count of a registered TFDS data set comes from metadata, offline."""
  out = summary.describe(_tfds_config('cifar100', tmp_path))  # an empty data dir
  assert out['num_classes'] == 100 and out['image_shape'] == [32, 32, 3]
  gray = summary.describe(_tfds_config('kmnist', tmp_path))
  assert gray['num_classes'] == 10 and gray['image_shape'] == [32, 32, 1]
  assert not any(tmp_path.iterdir())  # nothing downloaded or written


def test_unknown_tfds_data_set_is_named(tmp_path):
  from eeprune_jax.data import sources  # pylint: disable=g-import-not-at-top
  with pytest.raises(sources.UnknownDatasetError, match=r"config.data.name='cifar1000' is not "
                     r'a TFDS data set.*cifar100'):
    summary.describe(_tfds_config('cifar1000', tmp_path))
  with pytest.raises(sources.UnknownDatasetError, match=r"'cifar10/nosuchconfig'"):
    summary.describe(_tfds_config('cifar10/nosuchconfig', tmp_path))


def test_command_without_prepared_data_and_with_an_unknown_name(tmp_path):
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [str(REPO), os.environ.get('PYTHONPATH', '')]), 'JAX_PLATFORMS': 'cpu'}
  base = [sys.executable, '-m', 'eeprune_jax.summary', f'--config={REPO / "configs/cifar100.py"}',
          f'--config.data.data_dir={tmp_path}', '--config.model.width=0.25']
  proc = subprocess.run(base, env=env, cwd=tmp_path, capture_output=True, text=True,
                        check=True, timeout=300)
  assert json.loads(proc.stdout)['num_classes'] == 100
  proc = subprocess.run(base + ['--config.data.name=cifar_100'], env=env, cwd=tmp_path,
                        capture_output=True, text=True, check=False, timeout=300)
  assert proc.returncode != 0 and "config.data.name='cifar_100' is not a TFDS" in proc.stderr
  assert 'Traceback' not in proc.stderr
