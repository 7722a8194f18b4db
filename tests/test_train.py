"""End to end on the embedded digits: train, score, prune, continue, evaluate, resume."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from eeprune_jax import checkpointing
from eeprune_jax import config_base
from eeprune_jax import config_checks
from eeprune_jax import inspect as inspect_lib
from eeprune_jax import train


def tiny_config(**overrides):
  """A run of a few seconds per epoch: narrow ResNet-20 on 16x16 digits."""
  config = config_base.base_config()
  config.data.image_size = 16
  config.model.name = 'resnet20'
  config.model.width = 0.5
  config.model.exits = 'mid'
  config.train.num_epochs = 3
  config.train.batch_size = 64
  config.train.eval_batch_size = 128
  config.train.learning_rate = 0.05
  config.train.warmup_epochs = 0.5
  config.train.log_every_steps = 5
  config.train.progress_bar = False
  config.prune.fraction = 0.3
  config.prune.epoch = 1
  for key, value in overrides.items():
    section, field = key.split('.')
    config[section][field] = value
  return config


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('full')
  return workdir, train.train_and_evaluate(tiny_config(), str(workdir))


def test_run_prunes_exactly_and_leaves_its_artefacts(full_run):
  workdir, summary = full_run
  assert jax.device_count() == 8  # the data-parallel path runs sharded
  n = summary['pruning']['num_examples']
  rnd = summary['pruning']['rounds'][0]
  assert rnd['num_pruned'] == round(0.3 * n) - rnd['shortfall']
  keep = np.load(workdir / 'keep_mask.npy')
  scores = np.load(workdir / 'scores.npz')
  np.testing.assert_array_equal(keep, scores['keep'])
  np.testing.assert_array_equal(scores['index'], np.arange(n))
  assert scores['pred'].shape == (n, 2) and scores['conf'].shape == (n, 2)
  # The rule holds on the stored scores: every pruned example is correct at both exits.
  pruned = ~keep
  assert np.all(scores['pred'][pruned, 0] == scores['label'][pruned])
  assert np.all(scores['pred'][pruned, 1] == scores['label'][pruned])
  assert len(summary['history']) == 3 and len(summary['test_accuracy']) == 2
  assert json.loads((workdir / 'summary.json').read_text())['pruning']['num_pruned'] == (~keep).sum()


def test_ledger_counts_what_ran(full_run):
  _, summary = full_run
  ledger, hist = summary['ledger'], summary['history']
  assert ledger['examples_trained'] == sum(h['steps'] for h in hist) * 64
  assert ledger['examples_scored'] == summary['pruning']['num_examples']
  # Epochs after pruning are shorter, so the run costs less than full-data training.
  assert hist[1]['steps'] < hist[0]['steps']
  assert ledger['examples_trained_vs_full_data'] < 1
  expected = (ledger['train_macs'] + ledger['score_macs']) / ledger['full_data_train_macs']
  assert ledger['cost_vs_full_data'] == pytest.approx(expected)


def test_preempted_run_resumes_to_the_same_result(full_run, tmp_path, monkeypatch):
  full_dir, full_summary = full_run
  stop_at = full_summary['history'][1]['step'] - 3  # mid-epoch, after the pruning round
  monkeypatch.setattr(train.Preemption, 'should_stop', lambda self, step: step == stop_at)
  first = train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert first == {'preempted': True, 'step': stop_at}
  assert checkpointing.make_manager(tmp_path).latest_step() == stop_at
  monkeypatch.undo()
  resumed = train.train_and_evaluate(tiny_config(), str(tmp_path))
  np.testing.assert_array_equal(np.load(tmp_path / 'keep_mask.npy'),
                                np.load(full_dir / 'keep_mask.npy'))
  assert resumed['test_accuracy'] == full_summary['test_accuracy']
  a = checkpointing.restore_untyped(full_dir)['state']['params']
  b = checkpointing.restore_untyped(tmp_path)['state']['params']
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_inspect_reads_the_checkpoint(full_run):
  workdir, summary = full_run
  info = inspect_lib.inspect_workdir(str(workdir))
  assert info['step'] == summary['history'][-1]['step']
  assert info['mask']['num_pruned'] == summary['pruning']['num_pruned']
  assert set(info['exit_head_params']) == {'exit_0'}
  assert info['total_params'] > info['exit_head_params']['exit_0'] > 0
  assert len(info['mask']['pruned_fraction_per_class']) == 10


def test_workdir_of_another_config_is_refused_before_compute(full_run):
  workdir, _ = full_run
  with pytest.raises(ValueError, match=r'different config \(prune.fraction: stored 0.3, now 0.5'):
    train.train_and_evaluate(tiny_config(**{'prune.fraction': 0.5}), str(workdir))


@pytest.mark.parametrize('field,value,message', [
    ('model.name', 'vgg', "config.model.name='vgg' is not one of"),
    ('prune.threshold', 1.5, 'config.prune.threshold=1.5 is outside'),
    ('prune.fraction', 1.0, 'config.prune.fraction=1.0 is outside'),
    ('train.batch_size', 60, 'config.train.batch_size=60 is not a positive multiple of the device count'),
    ('model.exits', '3,40', 'config.model.exits'),
    ('prune.exit', 2, 'config.prune.exit=2 is not an exit index'),
    ('data.source', 'mnist', "config.data.source='mnist'"),
])
def test_bad_config_is_named(field, value, message):
  with pytest.raises(config_checks.ConfigError, match=message.replace('(', r'\(')):
    config_checks.validate(tiny_config(**{field: value}))


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
  config = tiny_config(**{'train.learning_rate': 1e30, 'prune.method': 'none'})
  with pytest.raises(FloatingPointError, match=r'non-finite loss at step \d+'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'summary.json').exists()


def test_one_device_gives_the_same_masks_as_eight(full_run, tmp_path):
  """The same config on 1 device (a subprocess without the 8-device flag) prunes the same."""
  full_dir, _ = full_run
  script = (f'import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n'
            'import jax, test_train\n'
            'assert jax.device_count() == 1\n'
            f'test_train.train.train_and_evaluate(test_train.tiny_config(), {str(tmp_path)!r})\n')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  subprocess.run([sys.executable, '-c', script], check=True, env=env, timeout=600)
  np.testing.assert_array_equal(np.load(tmp_path / 'keep_mask.npy'),
                                np.load(full_dir / 'keep_mask.npy'))
