"""Multi-exit training with EEPrune pruning rounds, evaluation and Orbax checkpoints.

The learning rate is a function of epoch progress e = epoch + step / steps_in_epoch
(linear warm-up, then cosine to zero at `num_epochs`). Pruning shortens every later epoch
(steps per epoch = kept examples // batch size) but leaves the schedule's shape in epochs
unchanged, so a pruned run follows the same learning-rate curve over fewer steps.
"""

import functools
import signal
import time
from typing import Any, Iterator

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from eeprune_jax import baselines
from eeprune_jax import checkpointing
from eeprune_jax import config_checks
from eeprune_jax import data as data_lib
from eeprune_jax import ledger as ledger_lib
from eeprune_jax import masks
from eeprune_jax import models
from eeprune_jax import parallel
from eeprune_jax import pruning_methods
from eeprune_jax import run_summary
from eeprune_jax import scoring
from eeprune_jax import tracking
from eeprune_jax import workdir as workdir_lib

P = jax.sharding.PartitionSpec


class TrainState(train_state.TrainState):
  """Params, optimizer state, BatchNorm statistics and the dropout key."""
  batch_stats: Any
  rng: jax.Array  # raw uint32 key data; per-step keys are folded from it


def learning_rate(train_config: ml_collections.ConfigDict, epoch_progress: float) -> float:
  """Linear warm-up to `learning_rate`, then cosine decay to 0 at `num_epochs`."""
  base, warmup, total = (train_config.learning_rate, train_config.warmup_epochs,
                         train_config.num_epochs)
  if epoch_progress < warmup:
    return base * epoch_progress / warmup
  t = (epoch_progress - warmup) / max(total - warmup, 1e-9)
  return base * 0.5 * (1 + np.cos(np.pi * min(t, 1.0)))


def exit_loss_weights(train_config: ml_collections.ConfigDict, num_exits: int,
                      epoch: int) -> np.ndarray:
  """The weight w_k of each early exit's loss (the final classifier's weight is 1)."""
  w = np.full(num_exits, train_config.exit_loss_weight, np.float32)
  if train_config.exit_loss_schedule == 'sdn':
    depth = (np.arange(num_exits) + 1) / (num_exits + 1)
    w *= depth * min(1.0, 2 * epoch / train_config.num_epochs)
  return w


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD (Nesterov) or AdamW with weight decay on kernels only; the LR is set every step."""
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)

  def chain(learning_rate):
    if train_config.optimizer == 'adamw':
      return optax.adamw(learning_rate, weight_decay=train_config.weight_decay, mask=decay_mask)
    return optax.chain(
        optax.add_decayed_weights(train_config.weight_decay, mask=decay_mask),
        optax.sgd(learning_rate, momentum=train_config.momentum, nesterov=True))

  return optax.inject_hyperparams(chain)(learning_rate=0.0)


def create_train_state(model: Any, tx: optax.GradientTransformation,
                       image_shape: tuple[int, ...], seed: int,
                       mesh: jax.sharding.Mesh) -> TrainState:
  """Initialises the model and optimizer, replicated over the mesh."""
  def init():
    params_key, dropout_key = jax.random.split(jax.random.key(seed))
    variables = model.init({'params': params_key, 'dropout': dropout_key},
                           jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables['params'],
                             batch_stats=variables.get('batch_stats', {}), tx=tx,
                             rng=jax.random.key_data(dropout_key))
  return jax.jit(init, out_shardings=parallel.replicated(mesh))()


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
  """Per-example softmax cross-entropy with label smoothing."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def train_step(state: TrainState, batch: dict[str, jax.Array], hparams: dict[str, jax.Array],
               label_smoothing: float = 0.0
               ) -> tuple[TrainState, dict[str, jax.Array], dict[str, jax.Array]]:
  """One data-parallel SGD step on this device's shard.

  Returns the new state, metrics summed over devices, and per-example rows of this shard
  (index, final-exit correctness and loss) for methods that track examples in training.
  `hparams['example_weight']` [N] scales each example's loss (InfoBatch; ones otherwise).
  """
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  step_key = jax.random.fold_in(step_key, jax.lax.axis_index(parallel.BATCH_AXIS))
  exit_weights = jnp.concatenate([hparams['exit_weights'], jnp.ones((1,), jnp.float32)])
  example_weight = hparams['example_weight'][batch['index']]

  def loss_fn(params):
    logits, new_model_state = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        mutable=['batch_stats'], rngs={'dropout': step_key})
    ce = jnp.stack([cross_entropy(l, batch['label'], label_smoothing) for l in logits], 1)
    return jnp.mean(example_weight * (ce @ exit_weights)), (new_model_state, logits, ce)

  # The replicated params must be marked device-varying before differentiating: otherwise
  # shard_map transposes the implicit broadcast into a psum and the gradient arrives
  # already summed over devices (x device count), which pmean would not undo.
  params = jax.lax.pcast(state.params, parallel.BATCH_AXIS, to='varying')
  (loss, (new_model_state, logits, ce)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(params)
  grads = jax.lax.pmean(grads, parallel.BATCH_AXIS)
  opt_state = state.opt_state._replace(
      hyperparams={**state.opt_state.hyperparams, 'learning_rate': hparams['lr']})
  new_state = state.replace(opt_state=opt_state).apply_gradients(
      grads=grads, batch_stats=new_model_state['batch_stats'])
  correct = jnp.stack([jnp.argmax(l, -1) == batch['label'] for l in logits], 1)
  metrics = {
      'loss': ce.sum(0), 'correct': correct.sum(0).astype(jnp.float32),
      'count': jnp.float32(ce.shape[0]), 'total_loss': loss * ce.shape[0],
  }
  per_example = {'index': batch['index'], 'correct': correct[:, -1], 'loss': ce[:, -1]}
  return new_state, jax.lax.psum(metrics, parallel.BATCH_AXIS), per_example


def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Per-exit loss and accuracy sums over the valid rows of this device's shard."""
  logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                          batch['image'], train=False)
  valid = batch['valid'].astype(jnp.float32)[:, None]
  ce = jnp.stack([cross_entropy(l, batch['label'], 0.0) for l in logits], 1)
  correct = jnp.stack([jnp.argmax(l, -1) == batch['label'] for l in logits], 1)
  metrics = {'loss': (ce * valid).sum(0), 'correct': (correct * valid).sum(0),
             'count': valid.sum()}
  return jax.lax.psum(metrics, parallel.BATCH_AXIS)


@jax.jit
def _accumulate(acc: dict[str, jax.Array], metrics: dict[str, jax.Array],
                step: jax.Array) -> dict[str, jax.Array]:
  """Adds step metrics to running sums and remembers the first step with a non-finite loss."""
  out = {k: acc[k] + metrics[k] for k in metrics}
  bad = ~jnp.isfinite(metrics['total_loss'])
  out['first_bad_step'] = jnp.where((acc['first_bad_step'] < 0) & bad, step,
                                    acc['first_bad_step'])
  return out


def _zero_metrics(num_outputs: int, mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  zeros = {'loss': np.zeros(num_outputs, np.float32), 'correct': np.zeros(num_outputs, np.float32),
           'count': np.float32(0), 'total_loss': np.float32(0), 'first_bad_step': np.int32(-1)}
  return parallel.replicate(mesh, zeros)


def _summarise(sums: dict[str, Any], prefix: str) -> dict[str, Any]:
  """Means from (sum, count) metrics: per-output accuracy and loss, final output last."""
  count = max(float(sums['count']), 1.0)
  return {f'{prefix}accuracy': [float(c) / count for c in np.asarray(sums['correct'])],
          f'{prefix}loss': [float(l) / count for l in np.asarray(sums['loss'])],
          f'{prefix}count': int(sums['count'])}


class Preemption:
  """Turns SIGTERM (TPU maintenance, spot reclaim) into a flag the loop checks each step."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning('SIGTERM received: saving a checkpoint and exiting.')
    self.requested = True

  def should_stop(self, step: int) -> bool:
    """Whether every process agrees to stop now (collective on multi-host runs)."""
    if jax.process_count() == 1:
      return self.requested
    if step % 10:  # a cross-host agreement every 10 steps keeps the hot loop free
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return bool(np.any(multihost_utils.process_allgather(np.int32(self.requested))))

  def restore(self) -> None:
    """Puts the previous SIGTERM handler back."""
    signal.signal(signal.SIGTERM, self._previous)


def prune_epochs(config: ml_collections.ConfigDict) -> list[int]:
  """The epochs at whose start a pruning round runs."""
  prune, num_epochs = config.prune, config.train.num_epochs
  if prune.method == 'none' or prune.method in pruning_methods.DYNAMIC_METHODS:
    return []
  if prune.every > 0:
    return list(range(prune.epoch, num_epochs, prune.every))
  return [prune.epoch] if prune.epoch < num_epochs else []


class _Run:
  """The state of one run: the pieces `train_and_evaluate` wires together."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config, self.workdir = config, workdir
    self.is_writer = jax.process_index() == 0
    self.mesh = parallel.make_mesh()
    self.pipeline = data_lib.create_pipeline(
        config.data, batch_size=config.train.batch_size,
        eval_batch_size=config.train.eval_batch_size, mesh=self.mesh, seed=config.seed)
    self.info = self.pipeline.info
    self.num_train = len(self.pipeline.train_labels)
    self.model = models.build_model(config.model, self.info.num_classes,
                                    axis_name=parallel.BATCH_AXIS)
    self.num_exits = len(models.exit_blocks(config.model))
    config_checks.validate_with_data(config, self.num_train)
    self.manager = checkpointing.make_manager(workdir, config.train.keep_checkpoints)
    workdir_lib.check_or_write_config(workdir, config, self.is_writer,
                                      has_checkpoint=self.manager.latest_step() is not None)
    self.exit_macs = models.count_macs(self.model, self.info.image_shape)
    self.forward_macs = models.forward_macs(self.model, self.info.image_shape)
    repl, batch = P(), P(parallel.BATCH_AXIS)
    self.p_train_step = parallel.data_parallel(
        functools.partial(train_step, label_smoothing=config.train.label_smoothing),
        self.mesh, in_specs=(repl, batch, repl), out_specs=(repl, repl, batch),
        donate_argnums=0)
    self.p_eval_step = parallel.data_parallel(eval_step, self.mesh, in_specs=(repl, batch),
                                              out_specs=repl)
    self.p_score_step = scoring.make_score_step(self.mesh)
    self.writer = None
    if self.is_writer:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self.writer = tensorboardX.SummaryWriter(str(workdir_lib.epath.Path(workdir) / 'tensorboard'))

  def init_state(self, seed: int) -> TrainState:
    """A freshly initialised, replicated train state."""
    return create_train_state(self.model, make_optimizer(self.config.train),
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

  def evaluate(self, state: TrainState, ledger: ledger_lib.Ledger) -> dict[str, Any]:
    """Per-exit accuracy and loss on the evaluation split."""
    start = time.time()
    sums = None
    for batch in self.pipeline.eval_batches('eval'):
      metrics = self.p_eval_step(state, batch)
      sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    result = _summarise(jax.device_get(sums), 'eval_')
    ledger.examples_evaluated += result['eval_count']
    ledger.add_time('eval', time.time() - start)
    return result


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, prunes, evaluates and checkpoints in `workdir`; resumes a run found there.

  Returns the summary that is also written to `workdir/summary.json`.
  """
  config_checks.validate(config)
  run = _Run(config, workdir)
  n, method = run.num_train, config.prune.method
  state = run.init_state(config.seed)
  keep = np.ones(n, bool)
  # InfoBatch's mask and loss weights of the current epoch (all-in for other methods).
  epoch_keep, epoch_weight = np.ones(n, bool), np.ones(n, np.float32)
  stats = tracking.ExampleStats(n, enabled=method in pruning_methods.TRACKED_METHODS)
  progress = {'epoch': 0, 'step_in_epoch': 0, 'rounds_done': 0, 'rounds': [], 'history': [],
              'ledger': ledger_lib.Ledger().to_dict(),
              'rng_state': np.random.default_rng(config.seed).bit_generator.state}

  def example_arrays() -> dict[str, np.ndarray]:
    return {'keep': keep, 'epoch_keep': epoch_keep, 'epoch_weight': epoch_weight,
            **stats.to_arrays()}

  if run.manager.latest_step() is not None:
    logging.info('Resuming from %s, step %d.', workdir, run.manager.latest_step())
    state, arrays, progress = checkpointing.restore(run.manager, state, example_arrays())
    keep, epoch_keep, epoch_weight = arrays['keep'], arrays['epoch_keep'], arrays['epoch_weight']
    stats.load_arrays(arrays)
  ledger = ledger_lib.Ledger.from_dict(progress['ledger'])
  rng = np.random.default_rng()
  rng.bit_generator.state = progress['rng_state']
  rounds_at = prune_epochs(config)
  targets = masks.cumulative_targets(n, config.prune.fraction, max(len(rounds_at), 1))
  weight_table = parallel.replicate(run.mesh, epoch_weight)

  def save(step_in_epoch: int, epoch: int) -> None:
    start = time.time()
    progress.update(epoch=epoch, step_in_epoch=step_in_epoch, ledger=ledger.to_dict(),
                    rng_state=rng.bit_generator.state)
    checkpointing.save(run.manager, int(state.step), state, example_arrays(), progress)
    ledger.add_time('checkpoint', time.time() - start)

  num_epochs = config.train.num_epochs
  preemption = Preemption()
  remaining_steps = lambda epoch: (num_epochs - epoch) * run.pipeline.steps_per_epoch(keep)
  bar = tqdm.tqdm(total=int(state.step) + remaining_steps(progress['epoch'])
                  - progress['step_in_epoch'], initial=int(state.step), unit='step',
                  dynamic_ncols=True, disable=not (config.train.progress_bar and run.is_writer))
  try:
    for epoch in range(progress['epoch'], num_epochs):
      skip = progress['step_in_epoch']
      if epoch in rounds_at and progress['rounds_done'] <= rounds_at.index(epoch):
        keep = _prune_round(run, state, keep, progress, ledger, rng, stats, epoch,
                            targets[rounds_at.index(epoch)])
        bar.total = int(state.step) + remaining_steps(epoch)
      if method in pruning_methods.DYNAMIC_METHODS and not skip:
        stats.flush()
        epoch_keep, epoch_weight = _infobatch_epoch(config, epoch, stats.last_loss)
        weight_table = parallel.replicate(run.mesh, epoch_weight)
      train_keep = keep & epoch_keep
      steps = run.pipeline.steps_per_epoch(train_keep)
      sums = _zero_metrics(run.num_exits + 1, run.mesh)
      weights = exit_loss_weights(config.train, run.num_exits, epoch)
      start = time.time()
      for i, batch in enumerate(run.pipeline.train_epoch(epoch, train_keep)):
        if i < skip:  # resuming mid-epoch: the order is a function of (seed, epoch, keep)
          continue
        hparams = {'lr': np.float32(learning_rate(config.train, epoch + i / steps)),
                   'exit_weights': weights, 'example_weight': weight_table}
        state, metrics, rows = run.p_train_step(state, batch, hparams)
        sums = _accumulate(sums, metrics, np.int32(ledger.train_steps))
        stats.add(rows)
        ledger.examples_trained += config.train.batch_size
        ledger.train_steps += 1
        bar.update(1)
        last = i + 1 == steps
        if last or (i + 1) % config.train.log_every_steps == 0:
          host = jax.device_get(sums)
          _check_finite(host, run.manager)
          stats.flush()
          summary = _summarise(host, 'train_')
          bar.set_postfix(loss=f'{float(host["total_loss"]) / max(host["count"], 1):.3f}',
                          acc=f'{summary["train_accuracy"][-1]:.3f}')
          run.log_scalars(int(state.step), {**summary, 'lr': float(hparams['lr'])})
        if preemption.should_stop(ledger.train_steps) and not last:
          _check_finite(jax.device_get(sums), run.manager)  # never checkpoint a diverged state
          ledger.add_time('train', time.time() - start)
          save(i + 1, epoch)
          run.manager.wait_until_finished()
          logging.warning('Preempted at step %d: checkpoint saved, rerun to resume.',
                          int(state.step))
          return {'preempted': True, 'step': int(state.step)}
      ledger.add_time('train', time.time() - start)
      record = {'epoch': epoch + 1, 'step': int(state.step), 'steps': steps - skip,
                'kept': int(train_keep.sum()),
                **_summarise(jax.device_get(sums), 'train_'), **run.evaluate(state, ledger)}
      progress['history'].append(record)
      run.log_scalars(int(state.step), record)
      logging.info('epoch %d: %s', epoch + 1, record)
      if run.is_writer:
        bar.write(_epoch_line(record, n))
      progress['step_in_epoch'] = 0
      if (epoch + 1) % config.train.checkpoint_every_epochs == 0 or epoch + 1 == num_epochs:
        save(0, epoch + 1)
  finally:
    bar.close()
    preemption.restore()
    run.manager.wait_until_finished()
    if run.writer:
      run.writer.close()

  summary = _write_summary(run, progress, keep, ledger)
  if run.is_writer:
    print(run_summary.closing_lines(summary, workdir), flush=True)
  return summary


def _infobatch_epoch(config: ml_collections.ConfigDict, epoch: int,
                     last_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """InfoBatch's keep mask and loss weights for `epoch` (full data outside its window)."""
  n, p = len(last_loss), config.prune
  if epoch < p.epoch or baselines.infobatch_anneal(epoch, config.train.num_epochs,
                                                   p.infobatch_anneal):
    return np.ones(n, bool), np.ones(n, np.float32)
  # Seeded by (seed, epoch), so a resumed run redraws the same epoch.
  return baselines.infobatch_epoch(last_loss, p.fraction,
                                   np.random.default_rng([config.seed, epoch]))


def _epoch_line(record: dict[str, Any], num_train: int) -> str:
  """One console line per epoch: train/test accuracy of every exit, final last."""
  fmt = lambda accs: '/'.join(f'{a:.3f}' for a in accs)
  kept = f'  kept {record["kept"] / num_train:.1%}' if record['kept'] < num_train else ''
  return (f"epoch {record['epoch']:>3}  step {record['step']:>7}  "
          f"train acc {fmt(record['train_accuracy'])}  test acc {fmt(record['eval_accuracy'])}"
          f"{kept}")


def _check_finite(host_sums: dict[str, Any], manager: Any) -> None:
  """Stops the run at the first non-finite loss; the last good checkpoint stays."""
  bad = int(host_sums['first_bad_step'])
  if bad >= 0:
    manager.wait_until_finished()
    raise FloatingPointError(
        f'non-finite loss at step {bad}; stopping. The last good checkpoint (step '
        f'{manager.latest_step()}) is kept: lower train.learning_rate or check the data.')


def _seed_states(run: _Run, state: TrainState, ledger: ledger_lib.Ledger,
                 epoch: int) -> list[TrainState]:
  """The run's state plus `score_seeds - 1` networks trained from other seeds to `epoch`."""
  states = [state]
  config = run.config
  for k in range(1, config.prune.score_seeds):
    extra = run.init_state(config.seed + k)
    ones = parallel.replicate(run.mesh, np.ones(run.num_train, np.float32))
    for e in range(epoch):
      steps = run.pipeline.steps_per_epoch(None)
      hparams = {'exit_weights': exit_loss_weights(config.train, run.num_exits, e),
                 'example_weight': ones}
      for i, batch in enumerate(run.pipeline.train_epoch(e, None)):
        hparams['lr'] = np.float32(learning_rate(config.train, e + i / steps))
        extra, _, _ = run.p_train_step(extra, batch, hparams)
        ledger.examples_trained_for_scoring += config.train.batch_size
    states.append(extra)
  return states


def _method_scores(run: _Run, state: TrainState, ledger: ledger_lib.Ledger,
                   stats: tracking.ExampleStats, epoch: int) -> dict[str, np.ndarray] | None:
  """The per-example arrays `prune.method` selects by, in index order."""
  method, n = run.config.prune.method, run.num_train
  start = time.time()
  if method in ('el2n', 'grand'):
    states = _seed_states(run, state, ledger, epoch)
  if pruning_methods.needs_scores(method):
    runs = []
    for s in (states if method == 'el2n' else [state]):
      scores = scoring.score_dataset(run.p_score_step, s, run.pipeline.eval_batches('train'), n)
      runs.append(scores['el2n'][:, -1])
      ledger.examples_scored += n
      ledger.scoring_passes += 1
    scores = {**scores, 'el2n_runs': np.stack(runs)} if method == 'el2n' else scores
  elif method == 'grand':
    p_grand = baselines.make_grand_step(run.mesh, run.config.prune.grand_chunk)
    runs = [baselines.grand_scores(p_grand, s, run.pipeline.eval_batches('train'), n)
            for s in states]
    ledger.examples_grad_scored += n * len(states)
    ledger.scoring_passes += len(states)
    scores = {'index': np.arange(n), 'label': run.pipeline.train_labels,
              'grand_runs': np.stack(runs)}
  elif method == 'forgetting':
    stats.flush()
    f = stats.forgetting
    return {'index': np.arange(n), 'label': run.pipeline.train_labels,
            'forget_counts': f.counts(), 'never_learned': f.never_learned(),
            'presented': f.presented()}
  else:
    return None
  ledger.add_time('score', time.time() - start)
  return scores


def _prune_round(run: _Run, state: TrainState, keep: np.ndarray, progress: dict[str, Any],
                 ledger: ledger_lib.Ledger, rng: np.random.Generator,
                 stats: tracking.ExampleStats, epoch: int, target: int) -> np.ndarray:
  """Scores the training set as the method needs, prunes, writes scores and mask."""
  config, round_index = run.config, progress['rounds_done']
  scores = _method_scores(run, state, ledger, stats, epoch)
  result = pruning_methods.prune(config.prune, scores=scores, labels=run.pipeline.train_labels,
                                 prior_keep=keep, target_pruned=target, rng=rng)
  mstats = masks.mask_stats(result.keep, run.pipeline.train_labels, run.info.num_classes)
  info = {'round': round_index, 'epoch': epoch, 'step': int(state.step),
          'target_pruned': result.target_pruned, 'shortfall': result.shortfall,
          'cutoff': None if np.isnan(result.cutoff) else result.cutoff,
          'num_pruned': mstats['num_pruned'], 'pruned_fraction': mstats['pruned_fraction']}
  info['emptied_classes'] = run_summary.warn_emptied_classes(
      result.keep, run.pipeline.train_labels, run.info.class_names,
      config.prune.class_warning_share, info)
  if result.shortfall:
    logging.warning('Pruning round %d: only %d of the %d examples to prune were eligible.',
                    round_index, result.target_pruned - result.shortfall, result.target_pruned)
  logging.info('Pruning round %d: %s', round_index, info)
  if run.is_writer:
    arrays = dict(scores) if scores is not None else {
        'index': np.arange(run.num_train), 'label': run.pipeline.train_labels}
    arrays['keep'] = result.keep
    root = workdir_lib.epath.Path(run.workdir)
    workdir_lib.write_npz(root / f'scores_round{round_index}.npz', **arrays)
    workdir_lib.write_npz(root / 'scores.npz', **arrays)
    workdir_lib.write_npy(root / 'keep_mask.npy', result.keep)
  progress['rounds'].append(info)
  progress['rounds_done'] = round_index + 1
  return result.keep


def _write_summary(run: _Run, progress: dict[str, Any], keep: np.ndarray,
                   ledger: ledger_lib.Ledger) -> dict[str, Any]:
  """The run's summary.json: config, per-exit test accuracy, pruning, cost ledger."""
  config = run.config
  full_steps = config.train.num_epochs * run.pipeline.steps_per_epoch(None)
  final = progress['history'][-1] if progress['history'] else {}
  summary = {
      'config': workdir_lib.config_to_dict(config),
      'exit_blocks': list(models.exit_blocks(config.model)),
      'macs_per_exit': run.exit_macs,
      'test_accuracy': final.get('eval_accuracy'),
      'test_loss': final.get('eval_loss'),
      'pruning': {**masks.mask_stats(keep, run.pipeline.train_labels, run.info.num_classes),
                  'rounds': progress['rounds']},
      'ledger': ledger.report(forward_macs=run.forward_macs,
                              full_data_examples=full_steps * config.train.batch_size),
      'history': progress['history'],
      'devices': jax.device_count(),
      'processes': jax.process_count(),
  }
  summary = run_summary.with_headline(summary, run.workdir, run.info.class_names)
  if run.is_writer:
    workdir_lib.write_json(workdir_lib.epath.Path(run.workdir) / 'summary.json', summary,
                           sort_keys=False)
  return summary
