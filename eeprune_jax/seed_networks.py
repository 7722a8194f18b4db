"""The extra networks EL2N scores with (`prune.score_seeds`), checkpointed and preemptible.

Network k (seed `config.seed + k`) trains from scratch to the pruning epoch, beside the run.
Each is an Orbax checkpoint of its own (`RunDir.seed_network(k)`: its state and where it
is), saved after every epoch and on preemption, so a preemption there loses at most the
steps since the last save, and a later round continues the network from the epoch it
reached instead of training it again. Training is deterministic in (seed, epoch), so a
network resumed from its checkpoint ends as one trained through.
"""

from typing import Callable

from absl import logging
from etils import epath
import orbax.checkpoint as ocp

from eeprune_jax import checkpointing
from eeprune_jax import loop
from eeprune_jax import run_context
from eeprune_jax import steps as steps_lib
from eeprune_jax import workdir as workdir_lib


class Preempted(Exception):
  """A seed network's training stopped for a preemption; its checkpoint is saved."""


class _StopCheck(loop.EpochObserver):
  """Asks the run's preemption check after every dispatch of a seed network."""

  def __init__(self, should_stop: Callable[[], bool]):
    self._should_stop = should_stop

  def should_stop(self) -> bool:
    return self._should_stop()


def _manager(path: epath.Path) -> ocp.CheckpointManager:
  checkpointing.drop_abandoned_reads()
  path = path if '://' in str(path) else epath.Path(path).absolute()
  return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=1),
                               item_names=('state', 'progress'))


def train_to(run: run_context.RunContext, k: int, epoch: int, charge: Callable[[int], None],
             should_stop: Callable[[], bool]) -> steps_lib.TrainState:
  """Network k trained to the start of `epoch`, resumed from its checkpoint where one is.

  `should_stop()` after every dispatch (the run's preemption check): True saves the network
  mid-epoch and raises Preempted. `charge(epochs)` once, at the end, with the epochs this
  round trained it (a preempted and resumed round charges them once, as one run through).
  """
  manager = _manager(workdir_lib.RunDir(run.workdir).seed_network(k))
  state = run.init_state(run.config.seed + k)
  done, first_step, round_start = 0, 0, 0
  latest = manager.latest_step()
  if latest is not None:
    restored = manager.restore(latest, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(state), progress=ocp.args.JsonRestore()))
    progress = restored.progress
    if progress['epoch'] <= epoch:  # else a network past this round: train anew
      state, done, first_step = restored.state, progress['epoch'], progress['step_in_epoch']
      # The same round resumed after a preemption, or a later round continuing the network.
      round_start = progress['round_start'] if progress['target'] == epoch else done
      logging.info('Score network %d resumed at epoch %d, step %d.', k, done, first_step)

  def save(e: int, step_in_epoch: int) -> None:
    manager.save(int(state.step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(checkpointing.host_copy(state)),
        progress=ocp.args.JsonSave({'epoch': e, 'step_in_epoch': step_in_epoch,
                                    'target': epoch, 'round_start': round_start})),
                 force=True)

  try:
    for e in range(done, epoch):
      plan = loop.EpochPlan(epoch=e, keep=None, exit_weights=run.exit_weights(e),
                            num_outputs=run.num_outputs, first_step=first_step)
      outcome = run.programs.run_epoch(state, {}, plan, _StopCheck(should_stop))
      state, first_step = outcome.state, 0
      if outcome.preempted:
        save(e, outcome.steps_done)
        raise Preempted(f'score network {k} preempted in epoch {e}, step '
                        f'{outcome.steps_done}; its checkpoint is saved')
      save(e + 1, 0)
  finally:
    manager.wait_until_finished()  # a failed save raises here, ending the run
    manager.close()
  charge(epoch - round_start)
  return state
