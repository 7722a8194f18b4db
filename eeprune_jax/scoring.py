"""The scoring pass: one forward pass over the training set, per-example exit statistics.

Per example: index, label, and [N, E+1] arrays pred, conf, el2n, loss holding the exits
shallow to deep and the final classifier last.
"""

from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from eeprune_jax import parallel


def exit_statistics(logits: tuple[jax.Array, ...], labels: jax.Array) -> dict[str, jax.Array]:
  """Prediction, confidence (max softmax), EL2N and cross-entropy of every exit, per example."""
  logits = jnp.stack([l.astype(jnp.float32) for l in logits], axis=1)  # [B, E+1, C]
  log_probs = jax.nn.log_softmax(logits)
  probs = jnp.exp(log_probs)
  onehot = jax.nn.one_hot(labels, logits.shape[-1])[:, None, :]
  return {
      'pred': jnp.argmax(logits, axis=-1).astype(jnp.int32),
      'conf': jnp.max(probs, axis=-1),
      'el2n': jnp.linalg.norm(probs - onehot, axis=-1),  # Paul et al. 2021
      'loss': -jnp.sum(onehot * log_probs, axis=-1),
  }


def score_step(state: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Per-device scoring step: eval-mode forward pass, per-example statistics of every exit."""
  logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                          batch['image'], train=False)
  out = exit_statistics(logits, batch['label'])
  out.update(index=batch['index'], label=batch['label'], valid=batch['valid'])
  return out


def make_score_step(mesh: jax.sharding.Mesh) -> Callable[..., dict[str, jax.Array]]:
  """The data-parallel scoring step: replicated state in, per-example rows out (sharded)."""
  spec = jax.sharding.PartitionSpec(parallel.BATCH_AXIS)
  return parallel.data_parallel(score_step, mesh, in_specs=(jax.sharding.PartitionSpec(), spec),
                                out_specs=spec)


def assemble(chunks: Iterable[dict[str, np.ndarray]], num_examples: int) -> dict[str, np.ndarray]:
  """Drops padded rows and puts the per-example rows in index order 0..N-1.

  Raises if any index is missing or seen twice, so scores and masks always line up with
  the data.
  """
  chunks = list(chunks)
  rows = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  valid = rows.pop('valid').astype(bool)
  rows = {k: v[valid] for k, v in rows.items()}
  index = rows['index']
  if len(index) != num_examples or not np.array_equal(np.sort(index), np.arange(num_examples)):
    seen = np.bincount(index, minlength=num_examples)
    raise RuntimeError(
        f'scoring pass covered {len(index)} rows for {num_examples} examples '
        f'({int((seen == 0).sum())} missing, {int((seen > 1).sum())} repeated): the input '
        'pipeline must yield every index exactly once in eval mode.')
  order = np.argsort(index, kind='stable')
  return {k: v[order] for k, v in rows.items()}


def score_dataset(p_score_step: Callable[..., Any], state: Any,
                  batches: Iterable[dict[str, jax.Array]], num_examples: int
                  ) -> dict[str, np.ndarray]:
  """Runs the scoring step over every batch and returns the rows in index order."""
  # Results stay on device until the end: one host transfer instead of one per step.
  outputs = [p_score_step(state, batch) for batch in batches]
  return assemble((parallel.global_to_host(o) for o in outputs), num_examples)
