"""Orbax checkpoints of a run: train state, per-example arrays, and progress.

Items: `state` (the TrainState), `examples` (numpy arrays [N] over the training indices:
the keep mask and the statistics some methods track), `progress` (JSON: epoch, step in
epoch, pruning rounds, ledger, history, rng state).
"""

import os
from typing import Any

from etils import epath
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ('state', 'examples', 'progress')


def checkpoint_dir(workdir: epath.PathLike) -> epath.Path:
  """Where a workdir keeps its Orbax checkpoints (absolute: Orbax refuses relative paths,
  so `--workdir=runs/x` is taken relative to the current directory)."""
  if '://' not in str(workdir):
    workdir = os.path.abspath(os.fspath(workdir))
  return epath.Path(workdir) / 'checkpoints'


def make_manager(workdir: epath.PathLike, max_to_keep: int = 2,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager over the workdir's checkpoints; steps are global train steps."""
  # Orbax writes each step to a temporary directory and renames it when complete, so an
  # interrupted save never replaces the last good checkpoint.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                         read_only=read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS)


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         examples: dict[str, np.ndarray], progress: dict[str, Any]) -> None:
  """Saves (asynchronously) the train state, the per-example arrays and the progress dict."""
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      examples=ocp.args.StandardSave({k: np.asarray(v) for k, v in examples.items()}),
      progress=ocp.args.JsonSave(progress)), force=True)


def restore(manager: ocp.CheckpointManager, state_template: Any,
            examples_template: dict[str, np.ndarray], step: int | None = None
            ) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
  """Restores (state, per-example arrays, progress) at `step` (default: the latest)."""
  step = manager.latest_step() if step is None else step
  num_examples = len(examples_template['keep'])
  mismatch = ValueError(f'checkpoint {step} in {manager.directory} was written for a data set '
                        f'of another size than this one ({num_examples} training examples): '
                        'this workdir belongs to other data; use a new --workdir.')
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(state_template),
        examples=ocp.args.StandardRestore(examples_template),
        progress=ocp.args.JsonRestore()))
  except ValueError as e:
    raise mismatch from e
  if np.shape(restored.examples['keep']) != (num_examples,):
    raise mismatch
  examples = {k: np.asarray(v) for k, v in restored.examples.items()}
  return restored.state, examples, restored.progress


def restore_untyped(workdir: epath.PathLike, step: int | None = None) -> dict[str, Any]:
  """Restores a checkpoint as plain arrays, without a model (for inspection)."""
  manager = make_manager(workdir, read_only=True)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir(workdir)}.')
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), examples=ocp.args.StandardRestore(),
      progress=ocp.args.JsonRestore()))
  return {'step': step, 'state': restored.state,
          'keep': np.asarray(restored.examples['keep'], bool),
          'progress': restored.progress, 'all_steps': list(manager.all_steps())}
