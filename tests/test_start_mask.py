"""`prune.mask_path`: a run starts from a given keep mask; bad masks are refused first."""

import numpy as np
import pytest

from eeprune_jax import config_checks
from eeprune_jax import train
import tiny_config as tiny_config_lib

N = 1437  # digits' training split


def _config(mask_path, **overrides):
  config = tiny_config_lib.get_config()
  config.update_from_flattened_dict({'prune.mask_path': str(mask_path), **overrides})
  return config


def _save(path, array):
  np.save(path, array)
  return path


def test_bad_masks_are_refused_naming_the_file_and_the_fix(tmp_path):
  missing = tmp_path / 'missing.npy'
  with pytest.raises(config_checks.ConfigError, match=r"mask_path='.*missing.npy' is not a file"):
    config_checks.validate(_config(missing))
  keep = np.ones(N, bool)
  cases = {
      'ints': (keep.astype(np.int64), r'holds int64, not bool: save the keep mask as bool'),
      'short': (keep[:100], r'has shape \(100,\), but the training split has 1437 examples'),
      'none_kept': (np.zeros(N, bool), r'keeps 0 of 1437 examples, fewer than .*batch_size=64'),
      'few_kept': (np.arange(N) < 63, r'keeps 63 of 1437 examples'),
  }
  for name, (array, message) in cases.items():
    path = _save(tmp_path / f'{name}.npy', array)
    with pytest.raises(config_checks.ConfigError, match=rf"mask_path='.*{name}.npy' {message}"):
      config_checks.validate_with_data(_config(path), N)
  (tmp_path / 'text.npy').write_text('not an array')
  with pytest.raises(config_checks.ConfigError, match=r"text.npy' is not a .npy array"):
    config_checks.start_mask(_config(tmp_path / 'text.npy'), N)
  assert config_checks.start_mask(tiny_config_lib.get_config(), N) is None


def test_a_bad_mask_stops_the_run_before_it_trains(tmp_path):
  path = _save(tmp_path / 'short.npy', np.ones(10, bool))
  with pytest.raises(config_checks.ConfigError, match='short.npy'):
    train.train_and_evaluate(_config(path, **{'prune.method': 'none'}), str(tmp_path / 'run'))
  assert not (tmp_path / 'run' / 'checkpoints').exists() or not any(
      (tmp_path / 'run' / 'checkpoints').iterdir())


def test_a_run_trains_on_the_kept_examples_of_a_given_mask(tmp_path):
  keep = np.random.default_rng(0).random(N) < 0.6
  path = _save(tmp_path / 'keep.npy', keep)
  summary = train.train_and_evaluate(
      _config(path, **{'prune.method': 'none', 'train.num_epochs': 2}), str(tmp_path / 'run'))
  hist = summary['history']
  assert [h['kept'] for h in hist] == [keep.sum()] * 2
  assert [h['steps'] for h in hist] == [keep.sum() // 64] * 2
  assert summary['pruning']['num_pruned'] == (~keep).sum()
  np.testing.assert_array_equal(np.load(tmp_path / 'run' / 'keep_mask.npy'), keep)
  for e in (1, 2):  # only kept examples were ever trained on, steps x batch of them a epoch
    table = np.load(tmp_path / 'run' / f'last_pass/epoch{e:04d}.npz')
    assert np.all(table['epoch'][~keep] == -1)
    assert (table['epoch'] == e - 1).sum() == hist[e - 1]['steps'] * 64
