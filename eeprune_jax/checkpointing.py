"""Orbax checkpoints of a run: train state, per-example arrays, and progress.

Items: `state` (the TrainState), `examples` (numpy arrays [N, ...] over the training
indices: the keep mask, this epoch's mask and weights, the per-example table as `table_*`),
`progress` (a `run_state.RunState` as JSON: epoch, step in epoch, pruning rounds, ledger,
history, rng state).
"""

import os
import sys
import traceback
from typing import Any

from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from eeprune_jax import run_state as run_state_lib
from eeprune_jax import workdir as workdir_lib

ITEMS = ('state', 'examples', 'progress')


def checkpoint_dir(workdir: epath.PathLike) -> epath.Path:
  """Where a workdir keeps its Orbax checkpoints (absolute: Orbax refuses relative paths)."""
  path = workdir_lib.RunDir(workdir).checkpoints
  return path if '://' in str(path) else epath.Path(os.path.abspath(path))


def _is_abandoned_read(unraisable: Any) -> bool:
  """Whether an unraisable exception is a failed restore's read calling back into the
  restore's closed event loop (`drop_abandoned_reads`)."""
  if unraisable.exc_type is not RuntimeError or str(unraisable.exc_value) != (
      'Event loop is closed'):
    return False
  frames = [frame.name for frame in traceback.extract_tb(unraisable.exc_traceback)]
  return frames[-2:] == ['call_soon_threadsafe', '_check_closed']


def drop_abandoned_reads() -> None:
  """Makes this process drop the late callbacks of failed restores' abandoned reads.

  When one array of a checkpoint fails to read, Orbax's restore raises and closes its
  asyncio event loop while TensorStore still reads the others; each of those reads,
  completing, calls back into the closed loop, and Python printed its RuntimeError('Event
  loop is closed') with a traceback: one per abandoned read, burying the line that names
  the damage (tests/test_faults.py makes such a checkpoint). They can come before the
  caller has caught the restore's error, so the hook goes in before any restore, and
  stays. Every other unraisable exception goes to the previous hook; the hook counts what
  it drops (`dropped`).
  """
  if getattr(sys.unraisablehook, 'dropped', None) is not None:
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if _is_abandoned_read(unraisable):
      hook.dropped += 1
    else:
      previous(unraisable)

  hook.dropped = 0
  sys.unraisablehook = hook


def make_manager(workdir: epath.PathLike, max_to_keep: int = 2,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager over the workdir's checkpoints; steps are global train steps."""
  drop_abandoned_reads()
  # Orbax writes each step to a temporary directory and renames it when complete, so an
  # interrupted save never replaces the last good checkpoint.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                         read_only=read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS)


def host_copy(tree: Any) -> Any:
  """`tree` with its fully replicated jax.Arrays as numpy arrays, fetched in one batch.

  Orbax saves a replicated jax.Array by fetching it shard by shard, array by array: on 8
  CPU devices a narrow ResNet-20's train state took 1.5-5 s to save, against 0.05 s from
  numpy. Its numpy handler writes replicated arrays from process 0 only, and a restore with
  a jax.Array template places them on the template's sharding, so nothing else changes.
  Sharded arrays are left to Orbax, which writes each process's shards.
  """
  leaves, treedef = jax.tree.flatten(tree)
  replicated = [i for i, x in enumerate(leaves)
                if isinstance(x, jax.Array) and x.is_fully_replicated]
  for i, value in zip(replicated, jax.device_get([leaves[i] for i in replicated])):
    leaves[i] = value
  return jax.tree.unflatten(treedef, leaves)


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         examples: dict[str, np.ndarray], progress: run_state_lib.RunState) -> None:
  """Saves (asynchronously) the train state, the per-example arrays and the run state."""
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(host_copy(state)),
      examples=ocp.args.StandardSave({k: np.asarray(v) for k, v in examples.items()}),
      progress=ocp.args.JsonSave(progress.to_dict())), force=True)


class CheckpointMismatch(ValueError):
  """A readable checkpoint of another run (another data size or model) than this one."""


def mismatch(manager: ocp.CheckpointManager, step: int, num_examples: int
             ) -> CheckpointMismatch:
  """The error for a checkpoint written for a data set of another size."""
  return CheckpointMismatch(
      f'checkpoint {step} in {manager.directory} was written for a data set of another size '
      f'than this one ({num_examples} training examples): this workdir belongs to other '
      'data; use a new --workdir.')


def restore(manager: ocp.CheckpointManager, state_template: Any,
            examples_template: dict[str, np.ndarray], step: int | None = None
            ) -> tuple[Any, dict[str, np.ndarray], run_state_lib.RunState]:
  """Restores (state, per-example arrays, run state) at `step` (default: the latest).

  Any error reading it propagates as is: `checkpoint_recovery` tells a damaged checkpoint
  from one of other data.
  """
  step = manager.latest_step() if step is None else step
  num_examples = len(examples_template['keep'])
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(state_template),
      examples=ocp.args.StandardRestore(examples_template),
      progress=ocp.args.JsonRestore()))
  if np.shape(restored.examples['keep']) != (num_examples,):
    raise mismatch(manager, step, num_examples)
  examples = {k: np.asarray(v) for k, v in restored.examples.items()}
  return restored.state, examples, run_state_lib.RunState.from_dict(restored.progress)


def restore_untyped(workdir: epath.PathLike, step: int | None = None) -> dict[str, Any]:
  """Restores a checkpoint as plain arrays and its RunState, without a model (inspection).

  Tries `step` (default: the latest), then older steps while they fail to read; those are
  listed under `unreadable` (step, file, reason), and nothing is moved.
  """
  from eeprune_jax import checkpoint_recovery  # pylint: disable=g-import-not-at-top
  manager = make_manager(workdir, read_only=True)
  steps = sorted((s for s in manager.all_steps() if step is None or s <= step), reverse=True)
  if step is not None and step not in steps:
    raise FileNotFoundError(f'no checkpoint {step} in {checkpoint_dir(workdir)} '
                            f'(steps: {sorted(manager.all_steps())}).')
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir(workdir)}.')
  unreadable = []
  for s in steps:
    try:
      restored = manager.restore(s, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(), examples=ocp.args.StandardRestore(),
          progress=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except  # reported, not raised
      unreadable.append(checkpoint_recovery.diagnose(manager, s, e, None, None))
      continue
    return {'step': s, 'state': restored.state,
            'keep': np.asarray(restored.examples['keep'], bool),
            'progress': run_state_lib.RunState.from_dict(restored.progress),
            'all_steps': list(manager.all_steps()), 'unreadable': unreadable}
  raise FileNotFoundError(f'no readable checkpoint in {checkpoint_dir(workdir)}: ' +
                          '; '.join(str(d) for d in unreadable))
