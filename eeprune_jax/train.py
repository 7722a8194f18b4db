"""Training with pruning rounds, evaluation and Orbax checkpoints: `train_and_evaluate`.

The learning rate is a function of epoch progress e = epoch + step / steps_in_epoch
(linear warm-up, then cosine to zero at `num_epochs`). Pruning shortens every later epoch
(steps per epoch = kept examples // batch size) but leaves the schedule's shape in epochs
unchanged, so a pruned run follows the same learning-rate curve over fewer steps.

The parts: `run_context.py` (what stays fixed through a run), `run_state.py` (what changes
and checkpoints carry), `steps.py` (pure step functions, optimizer), `loop.py` (the jitted
programs and the epoch loop), `rounds.py` (pruning rounds), `run_writers.py` (TensorBoard,
console, per-epoch files).
"""

import dataclasses
import functools
import math
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

import eeprune_jax
from eeprune_jax import checkpoint_recovery
from eeprune_jax import checkpointing
from eeprune_jax import compilation_cache
from eeprune_jax import config_checks
from eeprune_jax import ledger as ledger_lib
from eeprune_jax import loop
from eeprune_jax import masks
from eeprune_jax import models
from eeprune_jax import parallel
from eeprune_jax import rounds as rounds_lib
from eeprune_jax import run_context
from eeprune_jax import run_state as run_state_lib
from eeprune_jax import run_summary
from eeprune_jax import seed_networks
from eeprune_jax import steps as steps_lib
from eeprune_jax import workdir as workdir_lib
from eeprune_jax import workdir_lock

# Kept importable from here: tests and benchmarks build steps through `train`.
create_train_state = steps_lib.create_train_state
make_optimizer = steps_lib.make_optimizer
train_step = steps_lib.train_step
Preemption = loop.Preemption

RunContext = run_context.RunContext
Carry = run_state_lib.Carry


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, prunes, evaluates and checkpoints in `workdir`; resumes a run found there.

  Returns the summary that is also written to `workdir/summary.json`. Refuses a workdir
  another live run holds (`workdir_lock.WorkdirBusy`).
  """
  config_checks.validate(config)
  with workdir_lock.held(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Set up, resume, then epoch by epoch: prune, train, evaluate, log, checkpoint."""
  compilation_cache.enable(config.train.compilation_cache_dir)
  ctx = RunContext.build(config, workdir)
  try:
    carry = _start_or_resume(ctx)
    schedule = _Schedule.of(ctx)
    ctx.writers.open_bar(total=carry.step - carry.progress.step_in_epoch
                         + schedule.remaining_steps(ctx, carry.progress.epoch, carry.keep),
                         initial=carry.step)
    observer = _RunObserver(ctx, carry)
    for epoch in range(carry.progress.epoch, schedule.num_epochs):
      resumed_at = carry.progress.step_in_epoch  # steps of this epoch done before
      if schedule.round_due(epoch, carry.progress):
        if not _prune_round(ctx, carry, schedule, epoch):
          return _stop_for_preemption(ctx, carry)
      if ctx.method.needs.epoch_mask and not resumed_at:
        carry.epoch_keep, carry.epoch_weight = ctx.method.epoch_mask(config, epoch,
                                                                     _host(carry.table))
      outcome, train_seconds = _train_epoch(ctx, carry, schedule, epoch, observer)
      if outcome.preempted:
        _save(ctx, carry, outcome.steps_done, epoch)
        return _stop_for_preemption(ctx, carry)
      _end_epoch(ctx, carry, epoch, outcome.sums, outcome.steps_done - resumed_at,
                 train_seconds, schedule.num_epochs)
      if (epoch + 1) % config.train.checkpoint_every_epochs == 0 or (
          epoch + 1 == schedule.num_epochs):
        _save(ctx, carry, 0, epoch + 1)
  finally:
    ctx.writers.close()
    ctx.pipeline.close()  # a run of a comparison leaves no reader threads or workers behind
    ctx.preemption.restore()
    ctx.saves.wait()
  summary = _write_summary(ctx, carry.progress, carry.keep)
  if ctx.is_writer:
    print(run_summary.closing_lines(summary, workdir), flush=True)
  return summary


@dataclasses.dataclass(frozen=True)
class _Schedule:
  """When the run prunes, how much, and how many epochs it trains."""
  rounds_at: list[int]  # the epochs at whose start a pruning round runs
  targets: list[int]  # examples pruned in total after each round
  epochs: float  # the schedule's length: num_epochs, or fewer (cost_matched), fractional
  num_epochs: int  # epochs the run trains (the last one part-way for a fractional schedule)

  @classmethod
  def of(cls, ctx: RunContext) -> '_Schedule':
    """The run's schedule from its config and method."""
    rounds_at = rounds_lib.prune_epochs(ctx.config)
    epochs = ctx.method.schedule_epochs(ctx.config)
    targets = masks.cumulative_targets(ctx.num_train, ctx.config.prune.fraction,
                                       max(len(rounds_at), 1))
    return cls(rounds_at, targets, epochs, math.ceil(epochs - 1e-9))

  def round_due(self, epoch: int, progress: run_state_lib.RunState) -> bool:
    """A pruning round runs at the start of `epoch` and has not run yet."""
    return epoch in self.rounds_at and progress.rounds_done <= self.rounds_at.index(epoch)

  def max_steps(self, epoch: int, steps: int) -> int | None:
    """Where a fractional last epoch stops; None: the whole epoch."""
    if epoch + 1 <= self.epochs + 1e-9:
      return None
    return max(1, round((self.epochs - epoch) * steps))

  def remaining_steps(self, ctx: RunContext, epoch: int, keep: np.ndarray) -> int:
    """Train steps from the start of `epoch` to the end, for the progress bar."""
    return (self.num_epochs - epoch) * ctx.pipeline.steps_per_epoch(keep)


class _RunObserver(loop.EpochObserver):
  """The run's side of the epoch loop: ledger, step count, progress bar, TensorBoard
  scalars, the non-finite check and the preemption check."""

  def __init__(self, ctx: RunContext, carry: Carry):
    self.ctx, self.carry = ctx, carry
    self.started = False  # a dispatch ran: start-up is over
    self.epoch, self.steps_in_epoch = 0, 1  # the epoch now training (`start_epoch`)

  def start_epoch(self, epoch: int, steps_in_epoch: int) -> None:
    """The epoch about to train and its length in the schedule (learning-rate logging)."""
    self.epoch, self.steps_in_epoch = epoch, steps_in_epoch

  def dispatched(self, steps: int) -> None:
    ledger = self.carry.progress.ledger
    if not self.started:  # data loaded, state built, first program compiled and dispatched
      ledger.startup_seconds += time.time() - eeprune_jax.IMPORT_TIME
      self.started = True
    self.carry.step += steps
    self.ctx.saves.poll()  # a failed background save stops the run now, not at the next save
    ledger.train_steps += steps
    ledger.examples_trained += steps * self.ctx.config.train.batch_size
    self.ctx.writers.bar.update(steps)

  def logged(self, step_in_epoch: int, sums: dict[str, np.ndarray]) -> None:
    _check_finite(sums, self.ctx.manager)
    summary = steps_lib.summarise(sums, 'train_')
    self.ctx.writers.bar.set_postfix(
        loss=f'{float(sums["total_loss"]) / max(sums["count"], 1):.3f}',
        acc=f'{summary["train_accuracy"][-1]:.3f}')
    progress = self.epoch + step_in_epoch / self.steps_in_epoch
    progress *= self.ctx.programs.schedule_scale  # a compressed schedule (cost_matched)
    self.ctx.writers.scalars(self.carry.step, {
        **summary, 'lr': float(steps_lib.learning_rate(self.ctx.config.train, progress))})

  def should_stop(self) -> bool:
    return self.ctx.preemption.should_stop(self.carry.step)


def _start_or_resume(ctx: RunContext) -> Carry:
  """A fresh run's carry (from `prune.mask_path` if given), or the newest checkpoint's."""
  config, n = ctx.config, ctx.num_train
  carry = Carry.new(ctx.init_state(config.seed), ctx.programs.new_table(n, ctx.num_outputs),
                    n, config.seed)
  restored = checkpoint_recovery.restore_newest_readable(
      ctx.manager, carry.state, carry.example_arrays(jax.device_get(carry.table)),
      is_writer=ctx.is_writer)
  if restored is None:
    given = config_checks.start_mask(config, n)
    if given is not None:  # a fresh run from a given keep mask
      carry.keep = given
      if ctx.is_writer:
        workdir_lib.write_npy(ctx.paths.keep_mask, given)
    return carry
  state, arrays, progress = restored
  table = (parallel.replicate(ctx.mesh, {k: arrays[f'table_{k}'] for k in carry.table})
           if carry.table else {})
  return Carry(state=state, keep=arrays['keep'], epoch_keep=arrays['epoch_keep'],
               epoch_weight=arrays['epoch_weight'], table=table, progress=progress,
               step=int(state.step))


def _prune_round(ctx: RunContext, carry: Carry, schedule: _Schedule, epoch: int) -> bool:
  """The pruning round at the start of `epoch`; False if a preemption stopped it (in
  EL2N's extra networks: the round reruns), with the run checkpointed."""
  try:
    carry.keep = rounds_lib.prune_round(ctx, carry.state, carry.keep, carry.progress,
                                        _host(carry.table), epoch,
                                        schedule.targets[schedule.rounds_at.index(epoch)])
  except seed_networks.Preempted as e:
    if carry.step not in ctx.manager.all_steps():  # (else saved at the epoch's end)
      _save(ctx, carry, 0, epoch)
    logging.warning('Preemption in the pruning round: %s.', e)
    return False
  ctx.writers.bar.total = carry.step + schedule.remaining_steps(ctx, epoch, carry.keep)
  return True


def _train_epoch(ctx: RunContext, carry: Carry, schedule: _Schedule, epoch: int,
                 observer: _RunObserver) -> tuple[loop.EpochOutcome, float]:
  """Trains `epoch` (from where a resumed one stopped); the outcome and its seconds."""
  train_keep = carry.train_keep
  steps = ctx.pipeline.steps_per_epoch(train_keep)
  observer.start_epoch(epoch, steps)
  plan = loop.EpochPlan(
      epoch=epoch, keep=train_keep, exit_weights=ctx.exit_weights(epoch),
      num_outputs=ctx.num_outputs, first_step=carry.progress.step_in_epoch,
      example_weight=(parallel.replicate(ctx.mesh, carry.epoch_weight)
                      if ctx.programs.weighted else None),
      max_steps=schedule.max_steps(epoch, steps))
  start = ledger_lib.mark()
  outcome = ctx.programs.run_epoch(carry.state, carry.table, plan, observer)
  carry.state, carry.table = outcome.state, outcome.table
  return outcome, carry.progress.ledger.add_since('train', start)


def _end_epoch(ctx: RunContext, carry: Carry, epoch: int, sums: dict[str, np.ndarray],
               steps: int, train_seconds: float, num_epochs: int) -> None:
  """Evaluates after `epoch`, records it in the history and writes its logs and files."""
  start = time.time()
  record = {'epoch': epoch + 1, 'step': carry.step, 'steps': steps,
            'kept': int(carry.train_keep.sum()), 'train_seconds': train_seconds,
            **steps_lib.summarise(sums, 'train_'), **_evaluate(ctx, carry)}
  record['eval_seconds'] = time.time() - start
  if carry.table and ctx.config.train.last_pass_scores:
    ctx.writers.last_pass(epoch + 1, jax.device_get(carry.table))
  carry.progress.history.append(record)
  carry.progress.step_in_epoch = 0
  logging.info('epoch %d: %s', epoch + 1, record)
  ctx.writers.epoch(record, ctx.num_train, num_epochs)


def _evaluate(ctx: RunContext, carry: Carry) -> dict[str, Any]:
  """Per-exit accuracy and loss on the evaluation split, charged to the ledger."""
  start = ledger_lib.mark()
  result = steps_lib.summarise(ctx.programs.evaluate(carry.state, 'eval', ctx.num_outputs),
                               'eval_')
  carry.progress.ledger.examples_evaluated += result['eval_count']
  carry.progress.ledger.add_since('eval', start)
  return result


def _save(ctx: RunContext, carry: Carry, step_in_epoch: int, epoch: int) -> None:
  """Checkpoints the carry (asynchronously) as of step `step_in_epoch` of `epoch`."""
  start = ledger_lib.mark()
  carry.progress.epoch, carry.progress.step_in_epoch = epoch, step_in_epoch
  ctx.saves.save(carry.step, functools.partial(_write_checkpoint, ctx, carry))
  carry.progress.ledger.add_since('checkpoint', start)


def _write_checkpoint(ctx: RunContext, carry: Carry) -> None:
  """Starts the Orbax save of the carry as it is now."""
  checkpointing.save(ctx.manager, carry.step, carry.state,
                     carry.example_arrays(jax.device_get(carry.table)), carry.progress)


def _stop_for_preemption(ctx: RunContext, carry: Carry) -> dict[str, Any]:
  """Waits for the checkpoint just saved; the run's answer to a preemption."""
  ctx.saves.wait()
  logging.warning('Preempted at step %d: checkpoint saved, rerun to resume.', carry.step)
  return {'preempted': True, 'step': carry.step}


def _host(table: dict[str, jax.Array]) -> dict[str, np.ndarray] | None:
  """The per-example table copied to the host (None when the run keeps none)."""
  return jax.device_get(table) if table else None


def _check_finite(host_sums: dict[str, Any], manager: Any) -> None:
  """Stops the run at the first non-finite loss; the last good checkpoint stays."""
  bad = int(host_sums['first_bad_step'])
  if bad >= 0:
    manager.wait_until_finished()
    raise FloatingPointError(
        f'non-finite loss at step {bad}; stopping. The last good checkpoint (step '
        f'{manager.latest_step()}) is kept: lower train.learning_rate or check the data.')


def _write_summary(run: RunContext, rs: run_state_lib.RunState, keep: np.ndarray
                   ) -> dict[str, Any]:
  """The run's summary.json: config, per-exit test accuracy, pruning, cost ledger."""
  config = run.config
  full_steps = config.train.num_epochs * run.pipeline.steps_per_epoch(None)
  final = rs.history[-1] if rs.history else {}
  summary = {
      'config': workdir_lib.config_to_dict(config),
      'exit_blocks': list(models.exit_blocks(config.model)),
      'schedule_epochs': run.method.schedule_epochs(config),
      'macs_per_exit': run.exit_macs,
      'test_accuracy': final.get('eval_accuracy'),
      'test_loss': final.get('eval_loss'),
      'pruning': {**masks.mask_stats(keep, run.pipeline.train_labels, run.info.num_classes),
                  'rounds': rs.rounds},
      'ledger': rs.ledger.report(forward_macs=run.forward_macs,
                              full_data_examples=full_steps * config.train.batch_size),
      'history': rs.history,
      'devices': jax.device_count(),
      'processes': jax.process_count(),
  }
  summary = run_summary.with_headline(summary, run.workdir, run.info.class_names)
  if run.is_writer:
    workdir_lib.write_json(run.paths.summary, summary, sort_keys=False)
  return summary
