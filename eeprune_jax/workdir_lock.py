"""One writer per workdir: a lock file naming its owner (pid, host, start time).

Two runs on one workdir collide in their checkpoint writes (Orbax's temporary directories)
and overwrite each other's masks, so a run takes `lock.json` before it writes anything and
a second run is refused, naming the owner. The owner refreshes the lock's `heartbeat` every
`HEARTBEAT_SECONDS` while it runs and removes it when it ends. A lock whose owner is gone is
taken over with a warning: on the same host, when its pid is no longer running (or is
another process now); on another host, when its heartbeat is older than `STALE_SECONDS`.
Multi-host runs take it once, in process 0, and every process learns the outcome.

The lock is created with O_EXCL on local disks; on object stores (gs://), which have no
exclusive create, it is a check then a write: it catches a second run started by hand,
not two started within the same second.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import threading
import time
from typing import Any, Iterator

from absl import logging
from etils import epath
import jax
import numpy as np

from eeprune_jax import workdir as workdir_lib

HEARTBEAT_SECONDS = 60.0  # how often a running owner refreshes its lock
STALE_SECONDS = 600.0  # another host's lock not refreshed for this long is taken over


class WorkdirBusy(RuntimeError):
  """Another live run holds the workdir."""


@dataclasses.dataclass
class Owner:
  """Who holds a lock."""
  pid: int
  host: str
  started: float  # time.time() when it took the lock
  heartbeat: float  # time.time() of its latest refresh
  pid_start: str | None = None  # the process's start time in clock ticks (Linux), or None

  def describe(self) -> str:
    started = datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc)
    return (f'pid {self.pid} on host {self.host}, started '
            f'{started.isoformat(timespec="seconds")}, lock refreshed '
            f'{time.time() - self.heartbeat:.0f} s ago')


def _pid_start(pid: int) -> str | None:
  """A process's start time (field 22 of /proc/PID/stat), to tell a reused pid apart."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


def stale_reason(owner: Owner, now: float | None = None) -> str | None:
  """Why `owner`'s lock is stale (its process is gone), or None while it may be running."""
  now = time.time() if now is None else now
  if owner.host == socket.gethostname():
    if not _pid_alive(owner.pid):
      return f'its process {owner.pid} is no longer running'
    start = _pid_start(owner.pid)
    if owner.pid_start and start and start != owner.pid_start:
      return f'pid {owner.pid} is another process now'
    return None
  if now - owner.heartbeat > STALE_SECONDS:
    return (f'it was last refreshed {now - owner.heartbeat:.0f} s ago (a lock on another host '
            f'is stale after {STALE_SECONDS:.0f} s)')
  return None


class WorkdirLock:
  """This process's hold on a workdir's lock file."""

  def __init__(self, workdir: epath.PathLike):
    self.workdir = workdir
    self.path = workdir_lib.RunDir(workdir).lock
    now = time.time()
    self.owner = Owner(os.getpid(), socket.gethostname(), now, now, _pid_start(os.getpid()))
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def _local(self) -> bool:
    return '://' not in str(self.path)

  def _create(self) -> bool:
    """Creates the lock naming us; False where it already exists."""
    data = json.dumps(dataclasses.asdict(self.owner), indent=2).encode()
    if not self._local():
      if self.path.exists():
        return False
      self.path.write_bytes(data)
      return True
    try:
      fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    return True

  def read_owner(self) -> Owner | None:
    """The lock's owner (None: no lock, or one that cannot be parsed)."""
    try:
      return Owner(**json.loads(self.path.read_text()))
    except FileNotFoundError:
      return None
    except (ValueError, TypeError):  # half-written by a process killed while writing it
      return None

  def acquire(self) -> None:
    """Takes the lock, taking over a stale one with a warning; WorkdirBusy if it is held."""
    epath.Path(self.workdir).mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a lock that vanishes between the tries is retried
      if self._create():
        break
      owner = self.read_owner()
      if owner is None:
        reason = 'it cannot be read'
      else:
        reason = stale_reason(owner)
        if reason is None:
          raise WorkdirBusy(
              f'workdir {self.workdir} is in use by another run ({owner.describe()}; lock '
              f'{self.path}). Wait for it to end or stop it, or pass another --workdir; if '
              'that run is gone, delete the lock file.')
      logging.warning('Taking over the lock %s of a run that is gone (%s): %s.', self.path,
                      owner.describe() if owner else 'unreadable', reason)
      if self._local():  # a rename: of two takers, one finds nothing and tries again
        aside = self.path.parent / f'.{self.path.name}.stale-{os.getpid()}'
        try:
          os.rename(self.path, aside)
          os.remove(aside)
        except FileNotFoundError:
          pass
      else:
        self.path.unlink(missing_ok=True)
    else:
      raise WorkdirBusy(f'could not take the lock {self.path}: other runs keep taking it.')
    self._thread = threading.Thread(target=self._beat, name='workdir-lock', daemon=True)
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      current = self.read_owner()
      if current is None or (current.pid, current.host) != (self.owner.pid, self.owner.host):
        logging.error('The lock %s no longer names this run (now: %s).', self.path,
                      current.describe() if current else 'none')
        return
      self.owner.heartbeat = time.time()
      workdir_lib.write_json(self.path, dataclasses.asdict(self.owner))

  def release(self) -> None:
    """Stops the heartbeat and removes the lock if it still names us."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    current = self.read_owner()
    if current is not None and (current.pid, current.host) == (self.owner.pid, self.owner.host):
      self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def held(workdir: epath.PathLike) -> Iterator[Any]:
  """Holds the workdir's lock for the block; process 0 takes it for a multi-host run."""
  if jax.process_count() == 1:
    lock = WorkdirLock(workdir)
    lock.acquire()
    try:
      yield lock
    finally:
      lock.release()
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  lock, error = None, None
  if jax.process_index() == 0:
    lock = WorkdirLock(workdir)
    try:
      lock.acquire()
    except WorkdirBusy as e:
      error, lock = e, None
  # One collective at start-up: every process learns whether process 0 got the lock.
  got = bool(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
  if error is not None:
    raise error
  if not got:
    raise WorkdirBusy(f'workdir {workdir} is in use by another run (process 0 was refused '
                      'its lock; its log names the owner).')
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()
