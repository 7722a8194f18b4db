"""Concurrent runs of a comparison (`compare.parallel`): same results as one after another,
dependencies, failures, the progress view, and stopping and resuming."""

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from eeprune_jax import checkpointing
from eeprune_jax import compare
from eeprune_jax import run_pool
from eeprune_jax import workdir as workdir_lib
from test_compare import demo_config

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
# The cost-matched run matches random's: on these short runs EEPrune's scoring pass costs
# more than its pruning saves, and no run can match a cost above full data's.
RUNS = ('eeprune_mid_f0.3_s0', 'random_f0.3_s0', 'cost_matched_f0.3_s0')
# Without the training-less frontier (compare_demo's default): concurrency is the point here.
MATCHED = {'methods': 'eeprune_mid,random,cost_matched', 'fractions': '0.3', 'seeds': '0',
           'cost_reference': 'random', 'frontier': ''}
# Every comparison here that trains is this long: the learning-rate schedule is compiled into
# the train program, so runs of one length share their programs through the compilation
# cache (the SIGTERM test's runs are `both`'s; their own compilation took 20 CPU-s).
EPOCHS = 3


def config(**compare_fields):
  """The shrunk demo comparison config, `EPOCHS` long."""
  c = demo_config(**compare_fields)
  c.train.num_epochs = EPOCHS
  return c


def comparison_script(workdir: pathlib.Path, **compare_fields) -> list[str]:
  """A Python command that runs `config(...)` as a comparison in `workdir`, then prints
  whether its process ever started a JAX backend."""
  return [sys.executable, '-c', textwrap.dedent(f"""
      from jax._src import xla_bridge
      from eeprune_jax import compare
      from test_run_pool import config
      compare.run_comparison(config(**{compare_fields!r}), {str(workdir)!r})
      print('parent backend initialized:', xla_bridge.backends_are_initialized())
      """)]


def script_env() -> dict[str, str]:
  return {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), str(TESTS)])}


@pytest.fixture(scope='module')
def both(tmp_path_factory):
  """The same comparison one run after another (in this process) and three at once."""
  sequential = tmp_path_factory.mktemp('sequential')
  compare.run_comparison(config(**MATCHED), str(sequential))
  concurrent = tmp_path_factory.mktemp('concurrent')
  proc = subprocess.run(
      comparison_script(concurrent, **MATCHED, parallel=3, progress_every_s=0.5),
      env=script_env(), capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return sequential, concurrent, proc.stdout


def test_concurrent_runs_equal_sequential_runs(both):
  sequential, concurrent, _ = both
  for name in RUNS:
    a = workdir_lib.read_json(sequential / 'runs' / name / 'summary.json')
    b = workdir_lib.read_json(concurrent / 'runs' / name / 'summary.json')
    assert a['test_accuracy'] == b['test_accuracy'], name
    assert a['ledger']['cost_vs_full_data'] == b['ledger']['cost_vs_full_data'], name
  for name in RUNS[:2]:  # the pruned runs
    np.testing.assert_array_equal(np.load(sequential / 'runs' / name / 'keep_mask.npy'),
                                  np.load(concurrent / 'runs' / name / 'keep_mask.npy'))
  # The cost-matched run started only once the run it matches had finished.
  matched = workdir_lib.read_json(concurrent / 'runs' / RUNS[2] / 'summary.json')
  reference = workdir_lib.read_json(concurrent / 'runs' / RUNS[1] / 'summary.json')
  assert (matched['config']['prune']['cost_fraction'] ==
          reference['ledger']['cost_vs_full_data'])
  report = (concurrent / 'report.md').read_text()
  assert '3 of 3 runs finished' in report and 'Against training less' in report


def test_the_parent_of_concurrent_runs_holds_no_device(both):
  *_, stdout = both
  assert 'parent backend initialized: False' in stdout


def test_one_progress_view_and_a_log_per_run(both):
  _, concurrent, stdout = both
  assert '3 runs, 3 at a time, each with 0.300 of device memory' in stdout
  for name in RUNS:
    assert f'start {name} ->' in stdout and f'done {name}: test accuracy' in stdout
    log = (concurrent / 'runs' / name / 'log.txt').read_text()
    assert 'epoch   1' in log, log[-2000:]
    assert workdir_lib.read_json(concurrent / 'runs' / name / 'progress.json')['epoch'] >= 1
  assert 'running ' in stdout and '| ended ' in stdout  # the periodic status line
  assert stdout.index(f'done {RUNS[1]}') < stdout.index(f'start {RUNS[2]}')


def test_a_failed_run_fails_the_run_that_waits_on_it(tmp_path, capsys):
  # 99% pruned leaves fewer examples than a batch: the run process refuses after loading the
  # data (config_checks.validate_with_data), before any training step.
  results = compare.run_comparison(
      demo_config(methods='eeprune_mid,cost_matched', fractions='0.99', seeds='0', parallel=2,
                  frontier=''), str(tmp_path))
  by_name = {r.name: r for r in results}
  failed = by_name['eeprune_mid_f0.99_s0']
  assert failed.error and 'prune.fraction' in failed.error
  assert failed.error == (tmp_path / 'runs' / failed.name / 'failure.txt').read_text()
  assert not (tmp_path / 'runs' / failed.name / 'progress.json').exists()  # trained no epoch
  waiting = by_name['cost_matched_f0.99_s0']
  assert waiting.error.startswith('eeprune_mid_f0.99_s0 did not finish: ')
  assert not (tmp_path / 'runs' / waiting.name / 'log.txt').exists()  # never started
  assert f'failed {waiting.name}' in capsys.readouterr().out


def run_pid(run: pathlib.Path) -> int:
  """The pid of the process training `run`: the owner its workdir lock names."""
  return workdir_lib.read_json(run / 'lock.json')['pid']


def sigterm_pending(pid: int) -> bool:
  """Whether a SIGTERM sent to process `pid` waits to be delivered (it is stopped)."""
  status = pathlib.Path(f'/proc/{pid}/status').read_text()
  pending = int(re.search(r'^ShdPnd:\s*([0-9a-f]+)$', status, re.M).group(1), 16)
  return bool(pending >> (signal.SIGTERM - 1) & 1)


def test_sigterm_stops_every_run_with_a_checkpoint_and_a_rerun_resumes(both, tmp_path):
  del both  # run after it, on its worker (conftest.py): its programs are this test's
  # Each run is frozen (SIGSTOP) as soon as it has logged epoch 1, and continued only once
  # the SIGTERM its parent passes on is pending: however fast it trains, every run stops
  # within a dispatch of the end of epoch 2 (the host may have queued all of epoch 2's steps
  # when frozen), one epoch before its end.
  fields = {'methods': 'none,random', 'fractions': '0.3', 'seeds': '0', 'parallel': 2,
            'frontier': ''}
  runs = [tmp_path / 'runs' / n for n in ('none_f0_s0', 'random_f0.3_s0')]
  proc = subprocess.Popen(comparison_script(tmp_path, **fields),
                          env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  deadline, frozen = time.time() + 600, {}
  try:
    while len(frozen) < len(runs):
      assert proc.poll() is None and time.time() < deadline, (
          'the comparison ended, or timed out, before every run logged epoch 1')
      for run in runs:
        if run not in frozen and (run / 'progress.json').exists():
          frozen[run] = run_pid(run)
          os.kill(frozen[run], signal.SIGSTOP)
      time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 60  # the parent passes it on at its next poll (0.5 s)
    while not all(sigterm_pending(pid) for pid in frozen.values()):
      assert time.time() < deadline, 'the parent did not pass SIGTERM on to every run'
      time.sleep(0.05)
  finally:
    for pid in frozen.values():
      with contextlib.suppress(ProcessLookupError):  # (a run that ended: nothing to continue)
        os.kill(pid, signal.SIGCONT)
  stdout, _ = proc.communicate(timeout=600)
  assert 'SIGTERM: stopping every run' in stdout, stdout
  for run in runs:
    assert not (run / 'summary.json').exists()
    log = (run / 'log.txt').read_text()
    assert 'SIGTERM received: saving a checkpoint' in log
    # The stop's own checkpoint (demo_config saves no other before a run's end).
    stopped_at = checkpointing.make_manager(str(run), read_only=True).latest_step()
    assert stopped_at is not None and f'Preempted at step {stopped_at}:' in log, log
  results = compare.run_comparison(config(**fields), str(tmp_path))
  assert all(r.finished for r in results), [r.error for r in results]
  for run in runs:
    history = workdir_lib.read_json(run / 'summary.json')['history']
    assert [h['epoch'] for h in history] == [1, 2, 3]
    log = (run / 'log.txt').read_text()  # both processes' output: epoch 1 trained once
    assert log.count('epoch   1  step') == 1 and log.count('epoch   3  step') == 1, log


@pytest.mark.parametrize('fields, match', [
    ({'parallel': 0}, r'compare\.parallel=0'),
    ({'parallel': -2}, r'compare\.parallel=-2'),
    ({'memory_fraction': 1.5}, r'compare\.memory_fraction=1\.5'),
    ({'parallel': 4, 'memory_fraction': 0.3}, r'memory_fraction=0\.3 x compare\.parallel=4'),
    ({'progress_every_s': 0.0}, r'compare\.progress_every_s=0\.0'),
])
def test_bad_parallel_fields_are_refused_before_any_run(tmp_path, fields, match):
  with pytest.raises(ValueError, match=match):
    compare.run_comparison(demo_config(methods='none', **fields), str(tmp_path / 'c'))
  assert not (tmp_path / 'c').exists()


def test_memory_share_per_process(monkeypatch):
  assert run_pool.memory_fraction(1, 0.0) == 0.75  # JAX's own default, never more
  assert run_pool.memory_fraction(5, 0.0) == pytest.approx(0.18)
  assert run_pool.memory_fraction(5, 0.1) == 0.1
  monkeypatch.delenv(run_pool.MEMORY_ENV, raising=False)
  assert run_pool.worker_env(0.18)[run_pool.MEMORY_ENV] == '0.180'
  monkeypatch.setenv(run_pool.MEMORY_ENV, '0.5')  # the user's own choice stands
  assert run_pool.worker_env(0.18)[run_pool.MEMORY_ENV] == '0.5'


def test_a_killed_run_is_reported_with_how_it_ended(tmp_path):
  # As the kernel's OOM killer would: SIGKILL, no chance to write failure.txt. The kill
  # lands within a poll of the run's exec (pkill matches its command line from then on),
  # while it is still importing: it cannot have finished, and no epoch is paid for.
  run = tmp_path / 'runs' / 'none_f0_s0'
  ended = threading.Event()

  def kill_once_started():
    while not ended.is_set() and subprocess.run(
        ['pkill', '-KILL', '-f', f'eeprune_jax.run_pool {run}$'], check=False).returncode:
      time.sleep(0.05)

  killer = threading.Thread(target=kill_once_started)
  killer.start()
  try:
    results = compare.run_comparison(
        config(methods='none', seeds='0', parallel=2, frontier=''), str(tmp_path))
  finally:
    ended.set()
    killer.join()
  assert 'killed by SIGKILL (out of host memory?)' in results[0].error, results[0].error
  assert str(run / 'log.txt') in results[0].error
  assert not (run / 'summary.json').exists()
