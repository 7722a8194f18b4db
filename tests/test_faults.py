"""Faults a long run meets: a damaged checkpoint, one of other data, two runs on a workdir."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from eeprune_jax import checkpoint_recovery
from eeprune_jax import checkpointing
from eeprune_jax import run_state
from eeprune_jax import workdir_lock

TESTS = pathlib.Path(__file__).resolve().parent

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


# --- One writer per workdir ---------------------------------------------------------------

def _write_lock(workdir, **fields):
  owner = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': time.time(),
           'heartbeat': time.time(), 'pid_start': None, **fields}
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'lock.json').write_text(json.dumps(owner))


@pytest.fixture
def live_pid():
  proc = subprocess.Popen(['sleep', '60'])
  yield proc.pid
  proc.kill()
  proc.wait()


def test_a_second_main_on_a_live_workdir_is_refused_within_seconds(tmp_path, live_pid):
  """`main` on a workdir whose lock names a running process of this host: refused, naming
  it, before anything is written."""
  _write_lock(tmp_path, pid=live_pid)
  start = time.time()
  proc = subprocess.run(
      [sys.executable, '-m', 'eeprune_jax.main', f'--config={TESTS / "tiny_config.py"}',
       f'--workdir={tmp_path}'], capture_output=True, text=True, timeout=60,
      env=dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1'))
  seconds = time.time() - start
  assert proc.returncode != 0
  assert f'in use by another run (pid {live_pid} on host {socket.gethostname()}' in proc.stderr
  assert seconds < 5, seconds  # the bound: refused within seconds, not after loading
  assert sorted(p.name for p in tmp_path.iterdir()) == ['lock.json']
  assert json.loads((tmp_path / 'lock.json').read_text())['pid'] == live_pid


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
  dead = subprocess.Popen(['true'])
  dead.wait()
  _write_lock(tmp_path, pid=dead.pid)
  lock = workdir_lock.WorkdirLock(tmp_path)
  lock.acquire()
  assert json.loads((tmp_path / 'lock.json').read_text())['pid'] == os.getpid()
  assert f'its process {dead.pid} is no longer running' in caplog.text
  lock.release()
  assert not (tmp_path / 'lock.json').exists()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path, live_pid):
  _write_lock(tmp_path, pid=live_pid, pid_start='1')  # another process once had this pid
  lock = workdir_lock.WorkdirLock(tmp_path)
  lock.acquire()
  lock.release()


def test_another_hosts_lock_is_kept_while_fresh_and_taken_over_when_stale(tmp_path, caplog):
  _write_lock(tmp_path, pid=1, host='other-host')
  with pytest.raises(workdir_lock.WorkdirBusy, match='pid 1 on host other-host'):
    workdir_lock.WorkdirLock(tmp_path).acquire()
  old = time.time() - workdir_lock.STALE_SECONDS - 5
  _write_lock(tmp_path, pid=1, host='other-host', started=old, heartbeat=old)
  lock = workdir_lock.WorkdirLock(tmp_path)
  lock.acquire()
  assert 'last refreshed' in caplog.text
  lock.release()


def test_a_held_lock_refreshes_its_heartbeat_and_refuses_a_second_taker(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, 'HEARTBEAT_SECONDS', 0.05)
  with workdir_lock.held(tmp_path) as lock:
    first = lock.owner.heartbeat
    time.sleep(0.3)
    assert json.loads((tmp_path / 'lock.json').read_text())['heartbeat'] > first
    with pytest.raises(workdir_lock.WorkdirBusy, match=f'pid {os.getpid()}'):
      workdir_lock.WorkdirLock(tmp_path).acquire()
  assert not (tmp_path / 'lock.json').exists()
