"""A failed checkpoint save ends the run, within seconds and with its reason.

Orbax writes checkpoints in background threads and keeps an error there until the next
`save` or `wait_until_finished` asks for it: an hour-long epoch later, a run would find out
that its last save never happened. `SaveWatch` asks at most every `POLL_SECONDS` from the
training loop (`poll`, host-side and cheap: no device work), before every save and at the
end, and turns any background error into a `CheckpointSaveError` that names the workdir,
the step that failed, why (a full disk said plainly), and the previous checkpoint, which
Orbax's write-to-temporary-then-rename leaves intact.
"""

import errno
import time
from typing import Any

from absl import logging
import orbax.checkpoint as ocp

POLL_SECONDS = 5.0  # how often the training loop asks Orbax for a background error


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written; the run stops."""


def _root_cause(error: BaseException) -> BaseException:
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  return error


class SaveWatch:
  """Watches a CheckpointManager's background saves for errors."""

  def __init__(self, manager: ocp.CheckpointManager, workdir: str):
    self.manager, self.workdir = manager, workdir
    self.pending: int | None = None  # the step of the latest save started
    self._last_poll = time.monotonic()

  def _fail(self, error: Exception) -> CheckpointSaveError:
    cause = _root_cause(error)
    full = isinstance(cause, OSError) and cause.errno == errno.ENOSPC
    previous = None
    try:
      self.manager.reload()  # the steps on disk: a failed save leaves only its temporary dir
      previous = self.manager.latest_step()
    except Exception:  # pylint: disable=broad-except  # naming it is a courtesy
      pass
    kept = (f'the previous checkpoint (step {previous}) is intact: rerun to resume from it'
            if previous is not None else 'there is no earlier checkpoint')
    fix = ('the disk is full: free space there, then ' if full else '')
    message = (f'saving checkpoint {self.pending} in workdir {self.workdir} failed: '
               f'{type(cause).__name__}: {cause}. The run stops; {kept}. Fix: {fix}check that '
               'the workdir is writable and has room.')
    logging.error('%s', message)
    return CheckpointSaveError(message)

  def check(self) -> None:
    """Raises CheckpointSaveError if a background save failed (never waits for one)."""
    try:
      if not self.manager.is_saving_in_progress():
        # Returns at once; raises the error a finished save's finalize thread kept (which
        # check_for_errors, asking only the checkpointer, does not see).
        self.manager.wait_until_finished()
      self.manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except  # any failure ends the run
      raise self._fail(e) from e

  def poll(self) -> None:
    """`check`, at most every POLL_SECONDS (called after every dispatch)."""
    now = time.monotonic()
    if now - self._last_poll >= POLL_SECONDS:
      self._last_poll = now
      self.check()

  def save(self, step: int, save_fn: Any) -> None:
    """Waits for the save before (Orbax's save would), then starts `save_fn()` of `step`."""
    self.wait()  # an error of the save before is that save's, not this one's
    self.pending = step
    try:
      save_fn()
    except Exception as e:  # pylint: disable=broad-except  # the synchronous part failed
      raise self._fail(e) from e

  def wait(self) -> None:
    """Waits for the saves in flight; CheckpointSaveError if one failed."""
    try:
      self.manager.wait_until_finished()
      self.manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except  # any failure ends the run
      raise self._fail(e) from e
