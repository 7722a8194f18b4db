"""Runs a comparison's runs as concurrent processes on one accelerator (`compare.parallel`).

A CIFAR ResNet-18 run leaves most of a large GPU idle; several at once fill it. Each run
is its own process (`python -m eeprune_jax.run_pool RUN_DIR`, training the config its
parent wrote to `RUN_DIR/queued_config.json`) with its share of device memory
(`XLA_PYTHON_CLIENT_MEM_FRACTION`), so runs never share a JAX runtime and one that fails
or runs out of memory takes no other down. A run's output goes to `RUN_DIR/log.txt`; the
parent prints a line when a run starts, ends or fails, and a status line of every running
run's epoch every `progress_every_s` seconds.

Stopping: SIGINT (Ctrl-C) or SIGTERM to the parent sends SIGTERM to every run, which saves
a checkpoint and exits (the loop's own preemption handling); the same command resumes
them. The parent itself never starts a JAX backend, so it holds no device memory.
"""

import dataclasses
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Sequence, TextIO

import ml_collections

from eeprune_jax import workdir as workdir_lib

EXIT_PREEMPTED = 75  # os.EX_TEMPFAIL: stopped with a checkpoint saved; rerun to resume
MEMORY_ENV = 'XLA_PYTHON_CLIENT_MEM_FRACTION'
JAX_DEFAULT_MEMORY_FRACTION = 0.75


@dataclasses.dataclass(frozen=True)
class Job:
  """One run to start: its workdir, its config (built at launch) and what it waits for."""
  name: str
  run_dir: workdir_lib.RunDir
  make_config: Callable[[], ml_collections.ConfigDict]  # may raise ValueError
  after: str | None = None  # the job that must finish first (its summary feeds the config)


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How a job ended: a summary, an error, or stopped with a checkpoint."""
  name: str
  summary: dict[str, Any] | None = None
  error: str | None = None
  preempted: bool = False


def error_text(e: BaseException) -> str:
  """`Type: message`, plus the innermost frame for errors that are not config errors."""
  text = f'{type(e).__name__}: {e}'
  if not isinstance(e, ValueError):
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
      f = frames[-1]
      text += f'\n  (at {f.filename}:{f.lineno} in {f.name})'
  return text


def memory_fraction(parallel: int, configured: float) -> float:
  """Each process's share of device memory: `configured` if > 0, else 0.9 / `parallel`
  (a tenth left for the runtime), never above JAX's own default of 0.75."""
  if configured > 0:
    return configured
  return min(JAX_DEFAULT_MEMORY_FRACTION, 0.9 / parallel)


def worker_env(fraction: float) -> dict[str, str]:
  """The environment of a run's process: this one's, with its memory share set (a share
  the user exported is theirs to keep)."""
  env = dict(os.environ)
  env.setdefault(MEMORY_ENV, f'{fraction:.3f}')
  env.setdefault('PYTHONUNBUFFERED', '1')  # log.txt follows the run as it goes
  return env


class _Process:
  """A running job: its process and its log file."""

  def __init__(self, job: Job, env: dict[str, str]):
    self.job = job
    job.run_dir.root.mkdir(parents=True, exist_ok=True)
    job.run_dir.failure.unlink(missing_ok=True)  # a past attempt's, not this one's
    workdir_lib.write_json(job.run_dir.queued_config,
                           workdir_lib.config_to_dict(job.make_config()))
    self.log: TextIO = open(job.run_dir.log, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    # A session of its own: Ctrl-C reaches the parent only, which stops runs by SIGTERM,
    # the signal on which a run saves a checkpoint.
    self.process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-m', 'eeprune_jax.run_pool', str(job.run_dir.root)],
        stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

  def outcome(self, returncode: int) -> Outcome:
    """What the finished process left behind."""
    self.log.close()
    paths, name = self.job.run_dir, self.job.name
    if returncode == 0 and paths.summary.exists():
      return Outcome(name, summary=workdir_lib.read_json(paths.summary))
    if returncode == EXIT_PREEMPTED:
      return Outcome(name, preempted=True)
    if paths.failure.exists():
      return Outcome(name, error=paths.failure.read_text())
    text = paths.log.read_bytes().decode(errors='replace')
    last = [line for line in text.splitlines() if line.strip()]
    return Outcome(name, error=(
        f'the run process ended ({_how_it_ended(returncode)}); '
        f'last output line: {last[-1] if last else "(none)"}; full output in {paths.log}'))


def _how_it_ended(returncode: int) -> str:
  """`killed by SIGKILL (out of host memory?)`, `exit code 2` and the like."""
  if returncode < 0:
    name = signal.Signals(-returncode).name
    return f'killed by {name}' + (' (out of host memory?)' if name == 'SIGKILL' else '')
  return f'exit code {returncode}' + (' without a summary.json' if returncode == 0 else '')


def _progress(job: Job) -> str:
  """`name e3/20 acc 0.612` from the run's progress file; the name alone before epoch 1."""
  try:
    p = workdir_lib.read_json(job.run_dir.progress)
  except (OSError, ValueError):
    return job.name
  return f"{job.name} e{p['epoch']}/{p['num_epochs']} acc {p['test_accuracy']:.3f}"


def run_jobs(jobs: Sequence[Job], *, parallel: int, fraction: float,
             on_outcome: Callable[[Outcome], None], progress_every_s: float = 30.0,
             poll_s: float = 0.5) -> bool:
  """Runs `jobs`, at most `parallel` at once, each as soon as the job it waits for has
  finished, in the order given; calls `on_outcome` as each ends.

  A job whose dependency failed fails without starting; one whose dependency was stopped
  waits for the next call. Returns False when a run was stopped (SIGINT/SIGTERM to this
  process or to the run: it saved a checkpoint), True when every job ended.
  """
  pool = _Pool(jobs, parallel, worker_env(fraction), on_outcome)
  previous = {s: signal.signal(s, pool.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    return pool.run(progress_every_s, poll_s)
  finally:
    pool.stop_running()  # only after an error in this process: leave no run orphaned
    for s, handler in previous.items():
      signal.signal(s, handler)


class _Pool:
  """The jobs of one `run_jobs` call: waiting, running, ended, and a requested stop."""

  def __init__(self, jobs: Sequence[Job], parallel: int, env: dict[str, str],
               on_outcome: Callable[[Outcome], None]):
    self.names = {job.name for job in jobs}
    self.pending, self.running, self.ended = list(jobs), [], {}
    self.parallel, self.env, self.on_outcome = parallel, env, on_outcome
    self.stop_requested = self.stop_signalled = False

  def request_stop(self, signum, frame) -> None:  # pylint: disable=unused-argument
    """The SIGINT/SIGTERM handler: every run stops at its next step with a checkpoint."""
    if not self.stop_requested:
      print(f'{signal.Signals(signum).name}: stopping every run at its next step with a '
            'checkpoint; rerun the same command to resume.', flush=True)
    self.stop_requested = True

  def run(self, progress_every_s: float, poll_s: float) -> bool:
    """Starts, watches and reaps runs until every job ended or a stop took effect."""
    started = last_status = time.monotonic()
    while self.pending or self.running:
      self._start_ready()
      if self.stop_requested and not self.stop_signalled:
        for proc in self.running:
          proc.process.send_signal(signal.SIGTERM)
        self.stop_signalled = True
      self._reap()
      if self.stop_requested and not self.running:
        return False
      now = time.monotonic()
      if self.running and now - last_status >= progress_every_s:
        last_status = now
        self._print_status(now - started)
      if self.running:
        time.sleep(poll_s)
    # A run stopped by a SIGTERM of its own (not ours) is unfinished too.
    return not self.stop_requested and not any(o.preempted for o in self.ended.values())

  def stop_running(self) -> None:
    """SIGTERM to every run still running (each checkpoints and exits); waits for them."""
    for proc in self.running:
      proc.process.send_signal(signal.SIGTERM)
      proc.process.wait()
      proc.log.close()

  def _end(self, outcome: Outcome) -> None:
    self.ended[outcome.name] = outcome
    self.on_outcome(outcome)

  def _ready(self, job: Job) -> bool:
    return job.after is None or job.after not in self.names or job.after in self.ended

  def _start_ready(self) -> None:
    """Starts waiting jobs whose dependency ended, up to `parallel` running."""
    while not self.stop_requested and len(self.running) < self.parallel:
      job = next((j for j in self.pending if self._ready(j)), None)
      if job is None:
        return
      self.pending.remove(job)
      before = self.ended.get(job.after)
      if before is not None and before.summary is None:
        if not before.preempted:  # a preempted one resumes next time; so does this one
          self._end(Outcome(job.name, error=f'{job.after} did not finish: {before.error}'))
        continue
      try:
        self.running.append(_Process(job, self.env))
      except ValueError as e:
        self._end(Outcome(job.name, error=error_text(e)))
        continue
      print(f'start {job.name} -> {job.run_dir.root} (log.txt)', flush=True)

  def _reap(self) -> None:
    """Records the outcome of every run that ended since the last look."""
    for proc in list(self.running):
      returncode = proc.process.poll()
      if returncode is None:
        continue
      self.running.remove(proc)
      if self.stop_signalled and returncode == -signal.SIGTERM:
        proc.log.close()  # stopped before its loop could checkpoint: it restarts
        self._end(Outcome(proc.job.name, preempted=True))
      else:
        self._end(proc.outcome(returncode))

  def _print_status(self, elapsed_s: float) -> None:
    minutes, seconds = divmod(int(elapsed_s), 60)
    print(f'[{minutes:02d}:{seconds:02d}] running {len(self.running)}: '
          f'{", ".join(_progress(p.job) for p in self.running)} | ended {len(self.ended)}, '
          f'waiting {len(self.pending)}', flush=True)


def worker_main(argv: Sequence[str]) -> int:
  """Trains the run of `argv[1]` from its queued config; the exit code says how it ended."""
  from eeprune_jax import train  # pylint: disable=g-import-not-at-top  (the parent needs no JAX)
  paths = workdir_lib.RunDir(argv[1])
  config = ml_collections.ConfigDict(workdir_lib.read_json(paths.queued_config))
  try:
    summary = train.train_and_evaluate(config, str(paths.root))
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    workdir_lib.write_bytes(paths.failure, error_text(e).encode())
    return 1
  return EXIT_PREEMPTED if summary.get('preempted') else 0


if __name__ == '__main__':
  sys.exit(worker_main(sys.argv))
