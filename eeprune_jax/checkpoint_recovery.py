"""Resuming past a damaged checkpoint: name it, set it aside, restore the newest readable one.

A checkpoint that cannot be read (a file truncated by a full disk, a half-copied workdir) is
not a reason to stop a run that has an older good one beside it, nor is it a sign of other
data. Each step that fails to restore is diagnosed (`diagnose`): when its arrays read
without a template and their shapes differ from this run's, the workdir belongs to another
run (`checkpointing.CheckpointMismatch`, raised); otherwise the checkpoint is damaged: it is
named (step, file, reason), moved to `damaged_checkpoints/` beside `checkpoints/` (never
deleted: it may be worth a look), and the next older step is tried.
"""

import dataclasses
import os
import re
import shutil
from typing import Any

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from eeprune_jax import checkpointing
from eeprune_jax import run_state as run_state_lib
from eeprune_jax import workdir as workdir_lib


@dataclasses.dataclass
class Damage:
  """An unreadable checkpoint: its step, the file that broke it (or the item), why."""
  step: int
  file: str
  reason: str

  def __str__(self) -> str:
    return f'checkpoint {self.step} is unreadable ({self.file}: {self.reason})'


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {jax.tree_util.keystr(p): tuple(np.shape(x))
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _broken_file(step_dir: epath.Path, message: str) -> str | None:
  """The step's first empty file, or else a file of the step that the error names."""
  if str(step_dir).startswith('/'):  # local: look at every file (too many reads on GCS)
    for root, dirs, files in os.walk(str(step_dir)):
      dirs.sort()
      for name in sorted(files):
        if os.path.getsize(os.path.join(root, name)) == 0:
          return os.path.relpath(os.path.join(root, name), str(step_dir))
  for match in re.finditer(re.escape(str(step_dir)) + r'/([^"\'\s:,]+)', message):
    if not match.group(1).endswith('/'):
      return match.group(1)
  return None


def _reason(error: BaseException) -> str:
  """The root cause's first line (TensorStore appends a long spec to its messages)."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  line = (str(error).splitlines() or [''])[0].split(' See full TensorStore details')[0]
  return f'{type(error).__name__}: {line[:300]}'


def diagnose(manager: ocp.CheckpointManager, step: int, error: Exception,
             state_template: Any | None, num_examples: int | None) -> Damage:
  """Why `step` failed to restore: raises CheckpointMismatch for another run's checkpoint,
  else returns its Damage."""
  for item, template in (('examples', None), ('state', state_template)):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          **{item: ocp.args.StandardRestore()}))[item]
    except Exception:  # pylint: disable=broad-except  # this item is the broken one
      continue
    if item == 'examples' and num_examples is not None and (
        np.shape(restored['keep']) != (num_examples,)):
      raise checkpointing.mismatch(manager, step, num_examples)
    if item == 'state' and template is not None and _shapes(restored) != _shapes(template):
      raise checkpointing.CheckpointMismatch(
          f'checkpoint {step} in {manager.directory} holds a train state of another model '
          'than this config builds: this workdir belongs to another run; use a new --workdir.')
  step_dir = epath.Path(manager.directory) / str(step)
  return Damage(step, _broken_file(step_dir, str(error)) or 'unknown file', _reason(error))


def set_aside(manager: ocp.CheckpointManager, damage: Damage) -> epath.Path:
  """Moves a damaged step out of the manager's directory, into damaged_checkpoints/."""
  source = epath.Path(manager.directory) / str(damage.step)
  target_dir = workdir_lib.RunDir(epath.Path(manager.directory).parent).damaged_checkpoints
  target_dir.mkdir(parents=True, exist_ok=True)
  target, k = target_dir / str(damage.step), 1
  while target.exists():  # an earlier damaged copy of the same step stays too
    target, k = target_dir / f'{damage.step}.{k}', k + 1
  if str(source).startswith('/'):
    source.rename(target)
  else:  # object stores have no directory rename
    shutil.copytree(str(source), str(target))
    source.rmtree()
  (target / 'DAMAGED.txt').write_text(str(damage) + '\n')
  return target


def restore_newest_readable(manager: ocp.CheckpointManager, state_template: Any,
                            examples_template: dict[str, np.ndarray], is_writer: bool
                            ) -> tuple[Any, dict[str, np.ndarray], run_state_lib.RunState] | None:
  """(state, per-example arrays, run state) of the newest readable checkpoint; None if none.

  Damaged steps are logged and, by the writer (process 0), set aside.
  """
  num_examples = len(examples_template['keep'])
  steps = sorted(manager.all_steps(), reverse=True)
  damaged = []
  for step in steps:
    try:
      restored = checkpointing.restore(manager, state_template, examples_template, step)
    except checkpointing.CheckpointMismatch:
      raise
    except Exception as e:  # pylint: disable=broad-except  # diagnosed below
      damage = diagnose(manager, step, e, state_template, num_examples)
      damaged.append(damage)
      where = set_aside(manager, damage) if is_writer else None
      logging.warning('%s; %s', damage,
                      f'set aside in {where}' if where else 'the writer sets it aside')
      continue
    if damaged:
      logging.warning('Resuming from checkpoint %d, the newest readable one (%s).', step,
                      '; '.join(str(d) for d in damaged))
      manager.reload()
    else:
      logging.info('Resuming from %s, step %d.', manager.directory, step)
    return restored
  if damaged:
    logging.warning('No readable checkpoint in %s (%s): starting afresh.', manager.directory,
                    '; '.join(str(d) for d in damaged))
    manager.reload()
  return None
