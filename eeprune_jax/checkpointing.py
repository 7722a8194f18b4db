"""Orbax checkpoints of a run: train state, keep mask, and progress (epoch, ledger, rng)."""

from typing import Any

from etils import epath
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ('state', 'keep', 'progress')


def checkpoint_dir(workdir: epath.PathLike) -> epath.Path:
  """Where a workdir keeps its Orbax checkpoints."""
  return epath.Path(workdir) / 'checkpoints'


def make_manager(workdir: epath.PathLike, max_to_keep: int = 2,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager over the workdir's checkpoints; steps are global train steps."""
  # Orbax writes each step to a temporary directory and renames it when complete, so an
  # interrupted save never replaces the last good checkpoint.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                         read_only=read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS)


def save(manager: ocp.CheckpointManager, step: int, state: Any, keep: np.ndarray,
         progress: dict[str, Any]) -> None:
  """Saves (asynchronously) the train state, the keep mask and the progress dict."""
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      keep=ocp.args.StandardSave({'keep': np.asarray(keep, bool)}),
      progress=ocp.args.JsonSave(progress)), force=True)


def restore(manager: ocp.CheckpointManager, state_template: Any, num_examples: int,
            step: int | None = None) -> tuple[Any, np.ndarray, dict[str, Any]]:
  """Restores (state, keep mask, progress) at `step` (default: the latest)."""
  step = manager.latest_step() if step is None else step
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(state_template),
      keep=ocp.args.StandardRestore({'keep': np.ones(num_examples, bool)}),
      progress=ocp.args.JsonRestore()))
  keep = np.asarray(restored.keep['keep'], bool)
  if keep.shape != (num_examples,):
    raise ValueError(f'checkpoint {step} holds a keep mask of {keep.shape[0]} examples, the '
                     f'data set has {num_examples}: this workdir belongs to other data.')
  return restored.state, keep, restored.progress


def restore_untyped(workdir: epath.PathLike, step: int | None = None) -> dict[str, Any]:
  """Restores a checkpoint as plain arrays, without a model (for inspection)."""
  manager = make_manager(workdir, read_only=True)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir(workdir)}.')
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), keep=ocp.args.StandardRestore(),
      progress=ocp.args.JsonRestore()))
  return {'step': step, 'state': restored.state, 'keep': np.asarray(restored.keep['keep']),
          'progress': restored.progress, 'all_steps': list(manager.all_steps())}
