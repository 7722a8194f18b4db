"""Faults a long run meets: a damaged checkpoint, one of other data, two runs on a workdir,
a save that fails."""

import asyncio
import errno
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
from eeprune_jax import save_watch
from eeprune_jax import workdir_lock
import xla_env

TESTS = pathlib.Path(__file__).resolve().parent

W = 4096  # parameters: enough that their data is the step's largest file


def _save_steps(workdir, steps, num_examples=4, arrays=1):
  manager = checkpointing.make_manager(workdir, max_to_keep=5)
  for step in steps:
    rs = run_state.RunState.new(0)
    rs.epoch = step
    state = ({'w': np.full(W, float(step))} if arrays == 1 else
             {f'w{i}': np.full(W, float(step)) for i in range(arrays)})
    checkpointing.save(manager, step, state, {'keep': np.ones(num_examples, bool)}, rs)
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


def test_a_damaged_checkpoints_abandoned_reads_print_nothing(tmp_path, monkeypatch):
  """A failed restore's other reads, completing after it raised, each called back into its
  closed event loop: one printed RuntimeError traceback each
  (`checkpointing.drop_abandoned_reads`). They are dropped; any other unraisable exception
  still reaches the hook."""
  printed = []
  monkeypatch.setattr(sys, 'unraisablehook', printed.append)
  # 64 arrays: the truncated file holds many, whose reads may still be in flight at the error.
  _save_steps(tmp_path, [1, 2], arrays=64)  # its manager installs the hook
  hook = sys.unraisablehook
  # An abandoned read's callback as TensorStore makes one: into a closed loop, unraisable.
  loop = asyncio.new_event_loop()
  loop.close()

  class CallsBackWhenFreed:
    def __del__(self):
      loop.call_soon_threadsafe(print)

  CallsBackWhenFreed()
  assert hook.dropped == 1 and not printed
  # The real ones: how many reads a failing restore leaves behind depends on timing (alone,
  # dozens; under the suite's load, sometimes none). None of them is printed.
  _truncate_largest_state_file(tmp_path / 'checkpoints' / '2')
  assert checkpointing.restore_untyped(tmp_path)['step'] == 1
  deadline, last = time.monotonic() + 30, -1
  while time.monotonic() < deadline and hook.dropped != last:
    last = hook.dropped  # until the late callbacks stop coming
    time.sleep(1.0)
  assert not printed

  class RaisesWhenFreed:
    def __del__(self):
      raise ValueError('not a read')

  RaisesWhenFreed()
  assert [type(u.exc_value) for u in printed] == [ValueError]


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
  proc = subprocess.run(
      [sys.executable, '-m', 'eeprune_jax.main', f'--config={TESTS / "tiny_config.py"}',
       f'--workdir={tmp_path}'], capture_output=True, text=True, timeout=60,
      env=xla_env.env(1))
  assert proc.returncode != 0
  assert f'in use by another run (pid {live_pid} on host {socket.gethostname()}' in proc.stderr
  # Refused before anything is written (and before data or model: the lock comes first).
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


# --- A failed save ends the run -----------------------------------------------------------

def _fail_background_saves(monkeypatch, code):
  """Orbax's JSON writer (it runs in the background save thread) raises OSError(code)."""
  from orbax.checkpoint._src.handlers import json_checkpoint_handler  # pylint: disable=g-import-not-at-top

  async def failing(self, item, directory):  # pylint: disable=unused-argument
    raise OSError(code, os.strerror(code), str(directory))
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn', failing)


@pytest.mark.parametrize('code,fix', [(errno.ENOSPC, 'the disk is full'),
                                      (errno.EROFS, 'check that the workdir is writable')])
def test_a_failed_background_save_is_raised_by_the_next_poll(tmp_path, monkeypatch, code, fix):
  manager = _save_steps(tmp_path, [1])
  watch = save_watch.SaveWatch(manager, str(tmp_path))
  monkeypatch.setattr(save_watch, 'POLL_SECONDS', 0.0)
  _fail_background_saves(monkeypatch, code)
  watch.save(2, lambda: checkpointing.save(manager, 2, {'w': np.zeros(W)},
                                           {'keep': np.ones(4, bool)}, run_state.RunState.new(0)))
  deadline = time.time() + 30
  with pytest.raises(save_watch.CheckpointSaveError) as raised:
    while time.time() < deadline:  # the training loop polls after every dispatch
      watch.poll()
      time.sleep(0.05)
  message = str(raised.value)
  assert f'saving checkpoint 2 in workdir {tmp_path} failed: OSError: [Errno {code}]' in message
  assert 'the previous checkpoint (step 1) is intact' in message and fix in message
  watch.wait()  # raised once: the run's cleanup does not raise it again
  monkeypatch.undo()
  ckpt = checkpointing.restore_untyped(tmp_path)
  assert ckpt['step'] == 1 and ckpt['all_steps'] == [1] and not ckpt['unreadable']


_FAILING_RUN = """
import errno, os, sys, time
sys.path.insert(0, {tests!r})
from orbax.checkpoint._src.handlers import json_checkpoint_handler as jch
from eeprune_jax import train
import tiny_config
original, saves = jch.JsonCheckpointHandler._save_fn, []
async def filling(self, item, directory):
  saves.append(time.time())
  if len(saves) == 2:  # the disk fills during the second save
    with open({failed_at!r}, 'w') as f:
      f.write(str(time.time()))
    raise OSError(errno.ENOSPC, 'No space left on device', str(directory))
  return await original(self, item, directory)
jch.JsonCheckpointHandler._save_fn = filling
config = tiny_config.get_config()
config.train.num_epochs = 30  # far more than it gets to train
config.prune.method = 'none'  # nothing to compile but the train and eval steps
train.train_and_evaluate(config, sys.argv[1])
"""


def test_a_disk_that_fills_during_a_save_ends_the_run_within_a_minute(tmp_path):
  """A process: the failed background save stops it, non-zero, naming the workdir, well
  before the next save would have asked; the checkpoint before stays readable."""
  workdir, failed_at = tmp_path / 'run', tmp_path / 'failed_at'
  script = _FAILING_RUN.format(tests=str(TESTS), failed_at=str(failed_at))
  proc = subprocess.run([sys.executable, '-c', script, str(workdir)], capture_output=True,
                        text=True, timeout=300,
                        env=xla_env.env(1))
  ended = time.time()
  assert proc.returncode != 0
  assert 'CheckpointSaveError: saving checkpoint' in proc.stderr, proc.stderr[-3000:]
  assert f'in workdir {workdir} failed: OSError: [Errno 28]' in proc.stderr
  assert 'the disk is full' in proc.stderr
  assert ended - float(failed_at.read_text()) < 60  # the bound (measured: ~10 s)
  assert not (workdir / 'summary.json').exists()
  ckpt = checkpointing.restore_untyped(workdir)
  assert ckpt['all_steps'] == [ckpt['step']] and ckpt['progress'].epoch == 1
  assert not (workdir / 'lock.json').exists()  # released on the way out
