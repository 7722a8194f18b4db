"""Pure step functions and the optimizer: `(state, batch) -> (state, metrics)`.

Every step here runs on one device's shard inside `jax.shard_map` over the 1-D `batch`
mesh (`parallel.data_parallel`) and reduces over devices itself. The epoch loop
(`loop.py`) wraps them in jitted programs that run many steps per dispatch.

Metrics are (sum, count) pairs: `loss` and `correct` are per-output sums [E+1] (exits
shallow to deep, the final classifier last), `count` the number of examples, so sums from
any number of steps and devices add up and `summarise` divides once.
"""

import functools
from typing import Any

from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from eeprune_jax import parallel


class TrainState(train_state.TrainState):
  """Params, optimizer state, BatchNorm statistics and the dropout key."""
  batch_stats: Any
  rng: jax.Array  # raw uint32 key data; per-step keys are folded from it


def learning_rate(train_config: ml_collections.ConfigDict, epoch_progress: Any) -> Any:
  """Linear warm-up to `learning_rate`, then cosine decay to 0 at `num_epochs`.

  `epoch_progress` = epoch + step / steps_in_epoch: a traced scalar inside the loop's
  programs (the rate is computed on device from the step counter), or a host number
  (logging), computed then in numpy without touching the device.
  """
  xp = jnp if isinstance(epoch_progress, jax.Array) else np
  base, warmup, total = (train_config.learning_rate, train_config.warmup_epochs,
                         train_config.num_epochs)
  p = epoch_progress
  warm = base * p / max(warmup, 1e-9)
  t = xp.clip((p - warmup) / max(total - warmup, 1e-9), 0.0, 1.0)
  return xp.where(p < warmup, warm, base * 0.5 * (1 + xp.cos(xp.pi * t)))


def exit_loss_weights(train_config: ml_collections.ConfigDict, num_exits: int,
                      epoch: int) -> np.ndarray:
  """The weight w_k of each early exit's loss (the final classifier's weight is 1)."""
  w = np.full(num_exits, train_config.exit_loss_weight, np.float32)
  if train_config.exit_loss_schedule == 'sdn':
    depth = (np.arange(num_exits) + 1) / (num_exits + 1)
    w *= depth * min(1.0, 2 * epoch / train_config.num_epochs)
  return w


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD (Nesterov) or AdamW with weight decay on kernels only; the LR is set every step.

  Equal settings give the same object: a train state's optimizer is part of its tree
  structure, so a program traced for one run's state serves every run of the settings.
  """
  return _optimizer(train_config.optimizer, train_config.weight_decay, train_config.momentum)


@functools.lru_cache(maxsize=None)
def _optimizer(name: str, weight_decay: float, momentum: float
               ) -> optax.GradientTransformation:
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)

  def chain(learning_rate):
    if name == 'adamw':
      return optax.adamw(learning_rate, weight_decay=weight_decay, mask=decay_mask)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        optax.sgd(learning_rate, momentum=momentum, nesterov=True))

  return optax.inject_hyperparams(chain)(learning_rate=0.0)


def create_train_state(model: Any, tx: optax.GradientTransformation,
                       image_shape: tuple[int, ...], seed: int,
                       mesh: jax.sharding.Mesh) -> TrainState:
  """Initialises the model and optimizer, replicated over the mesh."""
  # The seed's key is an input, not a constant: runs of other seeds (a comparison's seeds,
  # EL2N's networks) call one compiled program. Same bits: the key is integer data.
  key_data = np.asarray(jax.random.key_data(jax.random.key(seed)))
  return _init_program(model, tx, tuple(image_shape), mesh)(key_data)


@functools.lru_cache(maxsize=16)
def _init_program(model: Any, tx: optax.GradientTransformation, image_shape: tuple[int, ...],
                  mesh: jax.sharding.Mesh) -> Any:
  """The jitted initialisation, one per (model, optimizer, shape, mesh) in a process."""
  def init(key_data):
    params_key, dropout_key = jax.random.split(jax.random.wrap_key_data(key_data))
    variables = model.init({'params': params_key, 'dropout': dropout_key},
                           jnp.zeros((1, *image_shape), jnp.float32), train=False)
    state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                              batch_stats=variables.get('batch_stats', {}), tx=tx,
                              rng=jax.random.key_data(dropout_key))
    # A strong int32 step, as a restored checkpoint's: flax's weakly typed 0 would give a
    # resumed run programs of other types than the fresh run's, compiled (not cached) again.
    return state.replace(step=jnp.zeros((), jnp.int32))
  return jax.jit(init, out_shardings=parallel.replicated(mesh))


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
  """Per-example softmax cross-entropy, with label smoothing when it is non-zero."""
  logits = logits.astype(jnp.float32)
  if not label_smoothing:  # integer labels: no [B, C] one-hot to build and multiply
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def train_step(state: TrainState, batch: dict[str, jax.Array], hparams: dict[str, jax.Array],
               label_smoothing: float = 0.0
               ) -> tuple[TrainState, dict[str, jax.Array], dict[str, jax.Array]]:
  """One data-parallel SGD step on this device's shard.

  `hparams`: `lr` (scalar), `exit_weights` [E], and optionally `example_weight` [B], a
  per-example loss scale of this batch (InfoBatch). Returns the new state, metrics summed
  over devices, and per-example rows of this shard: `index` [B], and `correct`, `conf`
  (max softmax) and `loss` [B, E+1] of every exit, final last, as this training pass saw
  them (the loop keeps what it needs of them; XLA drops the rest).
  """
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  step_key = jax.random.fold_in(step_key, jax.lax.axis_index(parallel.BATCH_AXIS))
  exit_weights = jnp.concatenate([hparams['exit_weights'], jnp.ones((1,), jnp.float32)])
  example_weight = hparams.get('example_weight')

  def loss_fn(params):
    logits, new_model_state = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        mutable=['batch_stats'], rngs={'dropout': step_key})
    ce = jnp.stack([cross_entropy(l, batch['label'], label_smoothing) for l in logits], 1)
    per_example = ce @ exit_weights
    if example_weight is not None:
      per_example = example_weight * per_example
    return jnp.mean(per_example), (new_model_state, logits, ce)

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
  conf = jnp.stack([jnp.max(jax.nn.softmax(l.astype(jnp.float32)), -1) for l in logits], 1)
  per_example = {'index': batch['index'], 'correct': correct, 'conf': conf, 'loss': ce}
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


def zero_metrics(num_outputs: int) -> dict[str, np.ndarray]:
  """Empty (sum, count) training metrics, with no non-finite step seen (-1)."""
  return {'loss': np.zeros(num_outputs, np.float32),
          'correct': np.zeros(num_outputs, np.float32),
          'count': np.float32(0), 'total_loss': np.float32(0), 'first_bad_step': np.int32(-1)}


def accumulate(sums: dict[str, jax.Array], metrics: dict[str, jax.Array],
               step: jax.Array) -> dict[str, jax.Array]:
  """Adds step metrics to running sums and remembers the first step with a non-finite loss."""
  out = {k: sums[k] + metrics[k] for k in metrics}
  bad = ~jnp.isfinite(metrics['total_loss'])
  out['first_bad_step'] = jnp.where((sums['first_bad_step'] < 0) & bad,
                                    step.astype(jnp.int32), sums['first_bad_step'])
  return out


def summarise(sums: dict[str, Any], prefix: str) -> dict[str, Any]:
  """Means from (sum, count) metrics: per-output accuracy and loss, final output last."""
  count = max(float(sums['count']), 1.0)
  return {f'{prefix}accuracy': [float(c) / count for c in np.asarray(sums['correct'])],
          f'{prefix}loss': [float(l) / count for l in np.asarray(sums['loss'])],
          f'{prefix}count': int(sums['count'])}
