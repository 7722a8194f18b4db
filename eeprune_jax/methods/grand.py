"""GraNd (Paul et al. 2021): prune the examples with the smallest expected gradient norm.

GraNd = ||d CE(final logits, y) / d params||_2 per example, eval-mode forward, averaged
over `prune.score_seeds` networks. A LOW norm means the example barely changes the
parameters (easy), so it is pruned first: priority = -mean. The per-example gradients
are computed in vmapped chunks, never as a batch x parameters Jacobian.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from eeprune_jax import parallel
from eeprune_jax.methods import base
from eeprune_jax.methods import el2n


def _example_loss(apply_fn: Callable[..., Any], params: Any, batch_stats: Any,
                  image: jax.Array, label: jax.Array) -> jax.Array:
  """Plain cross-entropy of the final exit on one example, eval-mode forward."""
  # train=False uses the running BatchNorm statistics, so an example's gradient does not
  # depend on which other examples share its batch (or its chunk).
  logits = apply_fn({'params': params, 'batch_stats': batch_stats}, image[None],
                    train=False)[-1]
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), label[None])[0]


def _squared_norm(tree: Any) -> jax.Array:
  """Sum of squares over every leaf of a pytree, in float32."""
  return sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree.leaves(tree))


def grand_step(state: Any, batch: dict[str, jax.Array], chunk_size: int,
               axis_name: str | None = None) -> dict[str, jax.Array]:
  """Per-device GraNd step: ||d CE(final logits_i, y_i) / d params||_2 of every example.

  The local batch is processed `chunk_size` examples at a time (a `lax.map` over chunks,
  `vmap` of `grad` within one), and each per-example gradient is reduced to its squared
  norm at once, so peak memory is chunk_size x params rather than batch x params.
  Inside `shard_map`, pass the mesh axis as `axis_name`.
  """
  params = state.params
  if axis_name is not None:
    # Under shard_map (check_vma), the gradient w.r.t. a replicated (device-invariant)
    # input is summed over devices automatically. Marking the params device-varying keeps
    # every device's gradient its own example's, not the sum of 8 different examples'.
    params = jax.lax.pcast(params, axis_name, to='varying')
  images, labels = batch['image'], batch['label']
  size = images.shape[0]
  chunk = max(1, min(chunk_size, size))  # a chunk larger than the shard would only pad
  num_chunks = -(-size // chunk)
  pad = num_chunks * chunk - size
  # Pad to whole chunks with copies of row 0 (always a well-formed input); the padded
  # results are sliced off below.
  images = jnp.concatenate([images, jnp.repeat(images[:1], pad, axis=0)])
  labels = jnp.concatenate([labels, jnp.repeat(labels[:1], pad, axis=0)])
  grad_fn = jax.grad(_example_loss, argnums=1)

  def per_example(image: jax.Array, label: jax.Array) -> jax.Array:
    return _squared_norm(grad_fn(state.apply_fn, params, state.batch_stats, image, label))

  def per_chunk(xs: tuple[jax.Array, jax.Array]) -> jax.Array:
    return jax.vmap(per_example)(*xs)

  squared = jax.lax.map(per_chunk, (images.reshape(num_chunks, chunk, *images.shape[1:]),
                                    labels.reshape(num_chunks, chunk)))
  return {'grand': jnp.sqrt(squared.reshape(-1)[:size])}


@functools.lru_cache(maxsize=None)
def per_example_step(chunk_size: int) -> Callable[..., dict[str, jax.Array]]:
  """The GraNd step of `chunk_size` for `loop.Programs.per_example` (the mesh's axis
  named); one function object per size, so its pass compiles once per run."""
  if chunk_size < 1:
    raise ValueError(f'prune.grand_chunk={chunk_size} must be at least 1.')
  return functools.partial(grand_step, chunk_size=chunk_size, axis_name=parallel.BATCH_AXIS)


def grand_priority(grand_runs: np.ndarray) -> np.ndarray:
  """Prune priority from GraNd scores [R, N] (or [N]): -mean over runs (seeds)."""
  return -el2n.mean_over_runs(grand_runs, 'GraNd')


@base.register
class GraNd(base.Method):
  """Every example eligible; the lowest mean gradient norm goes first."""
  name = 'grand'
  needs = base.Needs(scoring_pass=True)

  def scores(self, ctx: base.RoundContext) -> dict[str, np.ndarray]:
    """`grand_runs` [R, N]: every seed network's per-example gradient norms."""
    states = ctx.seed_states()
    step = per_example_step(ctx.config.prune.grand_chunk)
    n = ctx.num_examples
    runs = [ctx.per_example(s, step)['grand'] for s in states]
    ctx.ledger.examples_grad_scored += n * len(states)
    ctx.ledger.scoring_passes += len(states)
    return {'index': np.arange(n), 'label': ctx.labels, 'grand_runs': np.stack(runs)}

  def priority(self, scores: base.Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """Priority = -mean GraNd over runs (low = easy = pruned first)."""
    del rng, config
    return grand_priority(scores['grand_runs']), np.ones(len(labels), bool)
