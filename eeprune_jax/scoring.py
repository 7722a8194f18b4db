"""The scoring pass: one forward pass over the training set, per-example exit statistics.

Per example: index, label, and [N, E+1] arrays pred, conf, el2n, loss holding the exits
shallow to deep and the final classifier last. The pass itself is `loop.Programs.score`
(`score_step` inside `Programs.per_example`, rows put in index order by `assemble`).
"""

from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np


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
  # The pass (`Programs.per_example`) adds each row's index and valid.
  return exit_statistics(logits, batch['label']) | {'label': batch['label']}


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

