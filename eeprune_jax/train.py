"""Training with pruning rounds, evaluation and Orbax checkpoints: `train_and_evaluate`.

The learning rate is a function of epoch progress e = epoch + step / steps_in_epoch
(linear warm-up, then cosine to zero at `num_epochs`). Pruning shortens every later epoch
(steps per epoch = kept examples // batch size) but leaves the schedule's shape in epochs
unchanged, so a pruned run follows the same learning-rate curve over fewer steps.

The parts: `steps.py` (pure step functions, optimizer), `loop.py` (the jitted programs and
the epoch loop), `rounds.py` (pruning rounds), `run_state.py` (what checkpoints carry).
"""

import math
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

import eeprune_jax
from eeprune_jax import checkpoint_recovery
from eeprune_jax import checkpointing
from eeprune_jax import compilation_cache
from eeprune_jax import config_checks
from eeprune_jax import data as data_lib
from eeprune_jax import ledger as ledger_lib
from eeprune_jax import loop
from eeprune_jax import masks
from eeprune_jax import methods
from eeprune_jax import models
from eeprune_jax import parallel
from eeprune_jax import rounds as rounds_lib
from eeprune_jax import run_state as run_state_lib
from eeprune_jax import run_summary
from eeprune_jax import save_watch
from eeprune_jax import seed_networks
from eeprune_jax import steps as steps_lib
from eeprune_jax import workdir as workdir_lib
from eeprune_jax import workdir_lock

# Kept importable from here: tests and benchmarks build steps through `train`.
create_train_state = steps_lib.create_train_state
make_optimizer = steps_lib.make_optimizer
train_step = steps_lib.train_step
Preemption = loop.Preemption


class _Run:
  """The pieces of one run that `train_and_evaluate` wires together."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config, self.workdir = config, workdir
    self.paths = workdir_lib.RunDir(workdir)
    self.method = methods.get(config.prune.method)
    self.is_writer = jax.process_index() == 0
    self.mesh = parallel.make_mesh()
    self.pipeline = data_lib.create_pipeline(
        config.data, batch_size=config.train.batch_size,
        eval_batch_size=config.train.eval_batch_size, mesh=self.mesh, seed=config.seed,
        workdir=workdir)
    self.info = self.pipeline.info
    self.num_train = len(self.pipeline.train_labels)
    self.model = models.build_model(config.model, self.info.num_classes,
                                    axis_name=parallel.BATCH_AXIS)
    self.num_exits = len(models.exit_blocks(config.model))
    config_checks.validate_with_data(config, self.num_train)
    self.manager = checkpointing.make_manager(workdir, config.train.keep_checkpoints)
    self.saves = save_watch.SaveWatch(self.manager, workdir)
    self.should_stop = lambda: False  # the run's preemption check, set once it has one
    workdir_lib.check_or_write_config(workdir, config, self.is_writer,
                                      has_checkpoint=self.manager.latest_step() is not None)
    self.exit_macs = models.count_macs(self.model, self.info.image_shape)
    self.forward_macs = models.forward_macs(self.model, self.info.image_shape)
    self.programs = loop.Programs(
        self.pipeline, self.mesh, config.train, weighted=self.method.needs.epoch_mask,
        table=config.train.last_pass_scores or self.method.needs.example_table,
        schedule_epochs=self.method.schedule_epochs(config))
    self.writer = None
    if self.is_writer:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self.writer = tensorboardX.SummaryWriter(str(self.paths.tensorboard))

  def init_state(self, seed: int) -> steps_lib.TrainState:
    """A freshly initialised, replicated train state."""
    return steps_lib.create_train_state(self.model, steps_lib.make_optimizer(self.config.train),
                                        self.info.image_shape, seed, self.mesh)

  def log_scalars(self, step: int, scalars: dict[str, Any]) -> None:
    """Writes scalars (lists become one scalar per output) to TensorBoard."""
    if not self.writer:
      return
    names = [f'exit{k}' for k in range(self.num_exits)] + ['final']
    for key, value in scalars.items():
      if isinstance(value, list):
        for name, v in zip(names, value):
          self.writer.add_scalar(f'{key}/{name}', v, step)
      elif isinstance(value, (int, float)):
        self.writer.add_scalar(key, value, step)
    self.writer.flush()

  def evaluate(self, state: steps_lib.TrainState, rs: run_state_lib.RunState) -> dict[str, Any]:
    """Per-exit accuracy and loss on the evaluation split."""
    start = ledger_lib.mark()
    result = steps_lib.summarise(self.programs.evaluate(state, 'eval', self.num_exits + 1),
                                 'eval_')
    rs.ledger.examples_evaluated += result['eval_count']
    rs.ledger.add_since('eval', start)
    return result


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, prunes, evaluates and checkpoints in `workdir`; resumes a run found there.

  Returns the summary that is also written to `workdir/summary.json`. Refuses a workdir
  another live run holds (`workdir_lock.WorkdirBusy`).
  """
  config_checks.validate(config)
  with workdir_lock.held(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`train_and_evaluate` once the workdir is locked."""
  compilation_cache.enable(config.train.compilation_cache_dir)
  run = _Run(config, workdir)
  n = run.num_train
  state = run.init_state(config.seed)
  keep = np.ones(n, bool)
  # The mask and loss weights of the current epoch (all-in but for per-epoch methods).
  epoch_keep, epoch_weight = np.ones(n, bool), np.ones(n, np.float32)
  rs = run_state_lib.RunState.new(config.seed)
  # The per-example table (`example_table`), on device; {} when the run keeps none.
  table = run.programs.new_table(n, run.num_exits + 1)

  def example_arrays() -> dict[str, np.ndarray]:
    return {'keep': keep, 'epoch_keep': epoch_keep, 'epoch_weight': epoch_weight,
            **{f'table_{k}': v for k, v in jax.device_get(table).items()}}

  restored = checkpoint_recovery.restore_newest_readable(run.manager, state, example_arrays(),
                                                        is_writer=run.is_writer)
  if restored is not None:
    state, arrays, rs = restored
    keep, epoch_keep, epoch_weight = arrays['keep'], arrays['epoch_keep'], arrays['epoch_weight']
    if table:
      table = parallel.replicate(run.mesh, {k: arrays[f'table_{k}'] for k in table})
  else:
    given = config_checks.start_mask(config, n)
    if given is not None:  # a fresh run from a given keep mask
      keep = given
      if run.is_writer:
        workdir_lib.write_npy(run.paths.keep_mask, keep)
  ledger = rs.ledger
  rounds_at = rounds_lib.prune_epochs(config)
  targets = masks.cumulative_targets(n, config.prune.fraction, max(len(rounds_at), 1))
  weight_table = parallel.replicate(run.mesh, epoch_weight) if run.programs.weighted else None
  # Host-side step counter: the loop never reads the device's step inside an epoch.
  global_step = int(state.step)

  def save(step_in_epoch: int, epoch: int) -> None:
    start = ledger_lib.mark()
    rs.epoch, rs.step_in_epoch = epoch, step_in_epoch
    run.saves.save(global_step, lambda: checkpointing.save(
        run.manager, global_step, state, example_arrays(), rs))
    ledger.add_since('checkpoint', start)

  # Epochs this run trains: num_epochs, or fewer for a compressed schedule (cost_matched),
  # whose fractional last epoch stops part-way.
  schedule = run.method.schedule_epochs(config)
  num_epochs = math.ceil(schedule - 1e-9)
  max_steps = lambda epoch, steps: (None if epoch + 1 <= schedule + 1e-9
                                    else max(1, round((schedule - epoch) * steps)))
  preemption = loop.Preemption()
  run.should_stop = lambda: preemption.should_stop(global_step)
  remaining_steps = lambda epoch: (num_epochs - epoch) * run.pipeline.steps_per_epoch(keep)
  bar = tqdm.tqdm(total=global_step + remaining_steps(rs.epoch) - rs.step_in_epoch,
                  initial=global_step, unit='step', dynamic_ncols=True,
                  disable=not (config.train.progress_bar and run.is_writer))

  started = False

  def on_dispatch(steps: int) -> None:
    nonlocal global_step, started
    if not started:  # data loaded, state built, first program compiled and dispatched
      ledger.startup_seconds += time.time() - eeprune_jax.IMPORT_TIME
      started = True
    global_step += steps
    run.saves.poll()  # a failed background save stops the run now, not at the next save
    ledger.train_steps += steps
    ledger.examples_trained += steps * config.train.batch_size
    bar.update(steps)

  def on_log(step_in_epoch: int, host: dict[str, np.ndarray]) -> None:
    _check_finite(host, run.manager)
    summary = steps_lib.summarise(host, 'train_')
    bar.set_postfix(loss=f'{float(host["total_loss"]) / max(host["count"], 1):.3f}',
                    acc=f'{summary["train_accuracy"][-1]:.3f}')
    progress = epoch + step_in_epoch / run.pipeline.steps_per_epoch(train_keep)
    progress *= run.programs.schedule_scale  # a compressed schedule (cost_matched)
    run.log_scalars(global_step, {
        **summary, 'lr': float(steps_lib.learning_rate(config.train, progress))})

  try:
    for epoch in range(rs.epoch, num_epochs):
      skip = rs.step_in_epoch
      if epoch in rounds_at and rs.rounds_done <= rounds_at.index(epoch):
        try:
          keep = rounds_lib.prune_round(run, state, keep, rs, _host(table), epoch,
                                        targets[rounds_at.index(epoch)])
        except seed_networks.Preempted as e:  # in EL2N's extra networks: the round reruns
          if global_step not in run.manager.all_steps():  # (else saved at the epoch's end)
            save(0, epoch)
          run.saves.wait()
          logging.warning('Preempted at step %d (%s): checkpoint saved, rerun to resume.',
                          global_step, e)
          return {'preempted': True, 'step': global_step}
        bar.total = global_step + remaining_steps(epoch)
      if run.method.needs.epoch_mask and not skip:
        epoch_keep, epoch_weight = run.method.epoch_mask(config, epoch, _host(table))
        weight_table = parallel.replicate(run.mesh, epoch_weight)
      train_keep = keep & epoch_keep
      start = ledger_lib.mark()
      outcome = run.programs.run_epoch(
          state, epoch=epoch, keep=train_keep, first_step=skip, num_outputs=run.num_exits + 1,
          exit_weights=steps_lib.exit_loss_weights(config.train, run.num_exits, epoch),
          example_weight=weight_table, on_dispatch=on_dispatch, on_log=on_log,
          should_stop=run.should_stop, table=table,
          max_steps=max_steps(epoch, run.pipeline.steps_per_epoch(train_keep)))
      state, table = outcome.state, outcome.table
      train_seconds = ledger.add_since('train', start)
      if outcome.preempted:
        save(outcome.steps_done, epoch)
        run.saves.wait()
        logging.warning('Preempted at step %d: checkpoint saved, rerun to resume.',
                        global_step)
        return {'preempted': True, 'step': global_step}
      start = time.time()
      record = {'epoch': epoch + 1, 'step': global_step, 'steps': outcome.steps_done - skip,
                'kept': int(train_keep.sum()), 'train_seconds': train_seconds,
                **steps_lib.summarise(outcome.sums, 'train_'), **run.evaluate(state, rs)}
      record['eval_seconds'] = time.time() - start
      if table and config.train.last_pass_scores and run.is_writer:
        _write_last_pass(run.paths.last_pass(epoch + 1), jax.device_get(table))
      rs.history.append(record)
      run.log_scalars(global_step, record)
      logging.info('epoch %d: %s', epoch + 1, record)
      if run.is_writer:
        bar.write(_epoch_line(record, n))
        workdir_lib.write_json(run.paths.progress, {
            'epoch': epoch + 1, 'num_epochs': num_epochs,
            'test_accuracy': record['eval_accuracy'][-1]})
      rs.step_in_epoch = 0
      if (epoch + 1) % config.train.checkpoint_every_epochs == 0 or epoch + 1 == num_epochs:
        save(0, epoch + 1)
  finally:
    bar.close()
    preemption.restore()
    run.saves.wait()
    if run.writer:
      run.writer.close()

  summary = _write_summary(run, rs, keep)
  if run.is_writer:
    print(run_summary.closing_lines(summary, workdir), flush=True)
  return summary


def _host(table: dict[str, jax.Array]) -> dict[str, np.ndarray] | None:
  """The per-example table copied to the host (None when the run keeps none)."""
  return jax.device_get(table) if table else None


def _epoch_line(record: dict[str, Any], num_train: int) -> str:
  """One console line per epoch: train/test accuracy of every exit, final last."""
  fmt = lambda accs: '/'.join(f'{a:.3f}' for a in accs)
  kept = f'  kept {record["kept"] / num_train:.1%}' if record['kept'] < num_train else ''
  return (f"epoch {record['epoch']:>3}  step {record['step']:>7}  "
          f"train acc {fmt(record['train_accuracy'])}  test acc {fmt(record['eval_accuracy'])}"
          f"{kept}")


def _write_last_pass(path: Any, table: dict[str, np.ndarray]) -> None:
  """One epoch's last-pass table in compact dtypes, `index` in canonical order."""
  path.parent.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_npz(path, index=np.arange(len(table['epoch']), dtype=np.int32),
                        conf=table['conf'].astype(np.float16), correct=table['correct'],
                        loss=table['loss'].astype(np.float16),
                        epoch=table['epoch'].astype(np.int16))


def _check_finite(host_sums: dict[str, Any], manager: Any) -> None:
  """Stops the run at the first non-finite loss; the last good checkpoint stays."""
  bad = int(host_sums['first_bad_step'])
  if bad >= 0:
    manager.wait_until_finished()
    raise FloatingPointError(
        f'non-finite loss at step {bad}; stopping. The last good checkpoint (step '
        f'{manager.latest_step()}) is kept: lower train.learning_rate or check the data.')


def _write_summary(run: _Run, rs: run_state_lib.RunState, keep: np.ndarray
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
