"""Faults a long run meets, on tiny checkpoints: a damaged one, one of other data."""

import os

import numpy as np
import pytest

from eeprune_jax import checkpoint_recovery
from eeprune_jax import checkpointing
from eeprune_jax import run_state

W = 4096  # parameters: enough that their data is the step's largest file


def _save_steps(workdir, steps, num_examples=4):
  manager = checkpointing.make_manager(workdir, max_to_keep=5)
  for step in steps:
    rs = run_state.RunState.new(0)
    rs.epoch = step
    checkpointing.save(manager, step, {'w': np.full(W, float(step))},
                       {'keep': np.ones(num_examples, bool)}, rs)
    manager.wait_until_finished()
  return manager


def _truncate_largest_state_file(step_dir):
  files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir / 'state') for f in fs]
  largest = max(files, key=os.path.getsize)
  open(largest, 'w').close()  # pylint: disable=consider-using-with
  return os.path.relpath(largest, step_dir)


def test_a_damaged_latest_checkpoint_is_named_set_aside_and_the_previous_one_restored(
    tmp_path, caplog):
  _save_steps(tmp_path, [1, 2])
  broken = _truncate_largest_state_file(tmp_path / 'checkpoints' / '2')
  # inspect reports it and shows the newest readable step, moving nothing.
  ckpt = checkpointing.restore_untyped(tmp_path)
  assert ckpt['step'] == 1 and [d.step for d in ckpt['unreadable']] == [2]
  assert ckpt['unreadable'][0].file == broken
  assert (tmp_path / 'checkpoints' / '2').is_dir()
  manager = checkpointing.make_manager(tmp_path)
  state, examples, rs = checkpoint_recovery.restore_newest_readable(
      manager, {'w': np.zeros(W)}, {'keep': np.zeros(4, bool)}, is_writer=True)
  np.testing.assert_array_equal(state['w'], np.full(W, 1.0))
  assert rs.epoch == 1 and examples['keep'].all()
  # Set aside, not deleted, with its diagnosis; the manager no longer lists it.
  aside = tmp_path / 'damaged_checkpoints' / '2'
  assert (aside / broken).exists() and not (tmp_path / 'checkpoints' / '2').exists()
  assert broken in (aside / 'DAMAGED.txt').read_text()
  assert list(manager.all_steps()) == [1]
  messages = ' '.join(r.getMessage() for r in caplog.records)
  assert f'checkpoint 2 is unreadable ({broken}: ' in messages
  assert 'Resuming from checkpoint 1, the newest readable one' in messages
  assert 'another size' not in messages


def test_every_checkpoint_damaged_starts_afresh_with_them_set_aside(tmp_path):
  _save_steps(tmp_path, [1])
  _truncate_largest_state_file(tmp_path / 'checkpoints' / '1')
  manager = checkpointing.make_manager(tmp_path)
  assert checkpoint_recovery.restore_newest_readable(
      manager, {'w': np.zeros(W)}, {'keep': np.zeros(4, bool)}, is_writer=True) is None
  assert (tmp_path / 'damaged_checkpoints' / '1' / 'DAMAGED.txt').exists()
  assert manager.latest_step() is None


def test_a_checkpoint_of_another_data_size_is_named_as_such(tmp_path):
  _save_steps(tmp_path, [1], num_examples=4)
  manager = checkpointing.make_manager(tmp_path)
  with pytest.raises(checkpointing.CheckpointMismatch,
                     match=r'checkpoint 1 .* data set of another size .*5 training examples'):
    checkpoint_recovery.restore_newest_readable(
        manager, {'w': np.zeros(W)}, {'keep': np.zeros(5, bool)}, is_writer=True)
  assert (tmp_path / 'checkpoints' / '1').is_dir()  # nothing set aside


def test_a_checkpoint_of_another_model_is_named_as_such(tmp_path):
  _save_steps(tmp_path, [1])
  manager = checkpointing.make_manager(tmp_path)
  with pytest.raises(checkpointing.CheckpointMismatch, match='another model'):
    checkpoint_recovery.restore_newest_readable(
        manager, {'v': np.zeros(W)}, {'keep': np.zeros(4, bool)}, is_writer=True)
  assert (tmp_path / 'checkpoints' / '1').is_dir()
