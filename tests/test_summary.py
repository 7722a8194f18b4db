"""Tests of the `python -m eeprune_jax.summary` command."""

import json
import os
import pathlib
import subprocess
import sys

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
