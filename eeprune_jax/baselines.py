"""Baseline data-pruning scores: EL2N, GraNd, forgetting events and InfoBatch.

Every static method here turns its score into a prune priority for `masks.prune_top`,
which prunes the HIGHEST priority first; the direction of each is stated next to it and
tested. All of them prune the *easy* examples first, like EEPrune:

  EL2N      low error norm          -> priority = -mean EL2N over runs
  GraNd     low gradient norm       -> priority = -mean GraNd over runs
  Forgetting few forgetting events  -> priority = -count (never-learned and unseen last)

InfoBatch is dynamic (Qin et al. 2024): it redraws a soft-pruned subset every epoch and
reweights the loss instead of shrinking a permanent keep mask.
"""

from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eeprune_jax import parallel
from eeprune_jax import scoring


def _mean_over_runs(runs: np.ndarray, name: str) -> np.ndarray:
  """Mean over the run axis of [R, N] scores; [N] scores are one run."""
  runs = np.asarray(runs, np.float64)
  if runs.ndim == 1:
    return runs
  if runs.ndim != 2:
    raise ValueError(f'{name} scores must be [N] or [runs, N], got shape {runs.shape}.')
  return runs.mean(axis=0)


# ----------------------------------------------------------------------------------------
# EL2N (Paul et al. 2021)


def el2n_priority(el2n_runs: np.ndarray) -> np.ndarray:
  """Prune priority from final-exit EL2N scores [R, N] (or [N]): -mean over runs.

  EL2N = ||softmax(f(x)) - onehot(y)||_2 early in training. A LOW score means the network
  already fits the example (easy), so it is pruned first: priority = -mean. The paper
  averages over independently trained runs (seeds) to reduce the score's variance. Take
  the final exit's column of the scoring pass: `scores['el2n'][:, -1]`.
  """
  return -_mean_over_runs(el2n_runs, 'EL2N')


# ----------------------------------------------------------------------------------------
# GraNd (Paul et al. 2021)


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
  return {'index': batch['index'], 'valid': batch['valid'],
          'grand': jnp.sqrt(squared.reshape(-1)[:size])}


def make_grand_step(mesh: jax.sharding.Mesh,
                    chunk_size: int) -> Callable[..., dict[str, jax.Array]]:
  """The data-parallel GraNd step: replicated state in, per-example rows out (sharded)."""
  if chunk_size < 1:
    raise ValueError(f'chunk_size={chunk_size} must be at least 1.')
  spec = jax.sharding.PartitionSpec(parallel.BATCH_AXIS)
  return parallel.data_parallel(
      lambda state, batch: grand_step(state, batch, chunk_size, parallel.BATCH_AXIS),
      mesh, in_specs=(jax.sharding.PartitionSpec(), spec), out_specs=spec)


def grand_scores(p_grand_step: Callable[..., Any], state: Any,
                 batches: Iterable[dict[str, jax.Array]], num_examples: int) -> np.ndarray:
  """Runs the GraNd step over every (eval-mode) batch: float [N] in index order."""
  # The same assembly as the scoring pass: padding dropped, every index exactly once.
  return scoring.score_dataset(p_grand_step, state, batches, num_examples)['grand']


def grand_priority(grand_runs: np.ndarray) -> np.ndarray:
  """Prune priority from GraNd scores [R, N] (or [N]): -mean over runs (seeds).

  A LOW expected gradient norm means the example barely changes the parameters (easy),
  so it is pruned first: priority = -mean.
  """
  return -_mean_over_runs(grand_runs, 'GraNd')


# ----------------------------------------------------------------------------------------
# Forgetting events (Toneva et al. 2019)

_UNSEEN, _INCORRECT, _CORRECT = -1, 0, 1


class ForgettingTracker:
  """Counts forgetting events per example from the training minibatches, on the host.

  An example is forgotten when it is classified correctly at one presentation and
  incorrectly at the next presentation of that example (correct -> incorrect); the
  reverse (a learning event) is not counted.
  """

  def __init__(self, num_examples: int):
    self.num_examples = int(num_examples)
    self._last = np.full(self.num_examples, _UNSEEN, np.int8)  # outcome of last presentation
    self._counts = np.zeros(self.num_examples, np.int64)
    self._ever_correct = np.zeros(self.num_examples, bool)
    self._presentations = np.zeros(self.num_examples, np.int64)

  def update(self, index: np.ndarray, correct: np.ndarray,
             valid: np.ndarray | None = None) -> None:
    """Records one minibatch: example `index[i]` was classified correctly iff `correct[i]`.

    Rows with `valid` False (batch padding) are ignored. An index repeated within one
    call counts as consecutive presentations in row order.
    """
    index = np.asarray(index, np.int64).reshape(-1)
    correct = np.asarray(correct, bool).reshape(-1)
    if index.shape != correct.shape:
      raise ValueError(f'index has {index.size} rows, correct has {correct.size}.')
    if valid is not None:
      valid = np.asarray(valid, bool).reshape(-1)
      index, correct = index[valid], correct[valid]
    if index.size and (index.min() < 0 or index.max() >= self.num_examples):
      raise ValueError(f'indices must lie in [0, {self.num_examples}).')
    # Vectorised updates need unique indices: split repeats into rounds by occurrence.
    order = np.argsort(index, kind='stable')
    sorted_index = index[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_index)) + 1]
    occurrence = np.arange(index.size) - np.repeat(starts, np.diff(np.r_[starts, index.size]))
    rank = np.empty(index.size, np.int64)
    rank[order] = occurrence
    for r in range(int(rank.max()) + 1 if index.size else 0):
      rows = rank == r
      self._update_unique(index[rows], correct[rows])

  def _update_unique(self, index: np.ndarray, correct: np.ndarray) -> None:
    """`update` for a batch without repeated indices."""
    forgotten = (self._last[index] == _CORRECT) & ~correct
    self._counts[index] += forgotten
    self._ever_correct[index] |= correct
    self._presentations[index] += 1
    self._last[index] = np.where(correct, _CORRECT, _INCORRECT)

  def counts(self) -> np.ndarray:
    """Forgetting events per example, int [N]."""
    return self._counts.copy()

  def never_learned(self) -> np.ndarray:
    """Presented at least once but never classified correctly, bool [N]."""
    return (self._presentations > 0) & ~self._ever_correct

  def presented(self) -> np.ndarray:
    """Presented at least once, bool [N]."""
    return self._presentations > 0

  def presentations(self) -> np.ndarray:
    """How many times each example was presented, int [N]."""
    return self._presentations.copy()

  def priority(self, rng: np.random.Generator) -> np.ndarray:
    """`forgetting_priority` of the tracked statistics."""
    return forgetting_priority(self.counts(), self.never_learned(), rng, self.presented())

  def state_dict(self) -> dict[str, Any]:
    """The tracker as JSON-able lists (fits the checkpoint's JSON progress dict)."""
    return {'num_examples': self.num_examples,
            'last': self._last.tolist(),
            'counts': self._counts.tolist(),
            'ever_correct': self._ever_correct.tolist(),
            'presentations': self._presentations.tolist()}

  @classmethod
  def from_state_dict(cls, state: dict[str, Any]) -> 'ForgettingTracker':
    """Rebuilds a tracker from `state_dict()` (lists or numpy arrays)."""
    tracker = cls(state['num_examples'])
    fields = {'last': np.int8, 'counts': np.int64, 'ever_correct': bool,
              'presentations': np.int64}
    for name, dtype in fields.items():
      value = np.asarray(state[name], dtype)
      if value.shape != (tracker.num_examples,):
        raise ValueError(f'state[{name!r}] has shape {value.shape}, expected '
                         f'({tracker.num_examples},).')
      setattr(tracker, f'_{name}', value.copy())
    return tracker


def forgetting_priority(counts: np.ndarray, never_learned: np.ndarray,
                        rng: np.random.Generator,
                        presented: np.ndarray | None = None) -> np.ndarray:
  """Prune priority from forgetting counts: fewest events first, never-learned last.

  Order, first pruned to last:
    1. learned examples by ascending forgetting count (priority = -count + jitter);
    2. never-learned examples (presented, never correct): Toneva et al. count them as
       forgotten infinitely often, i.e. the hardest; finite priority below every learned
       example, in random order;
    3. never-presented examples (`presented` False: pruned earlier or not seen yet):
       -inf, since there is no evidence either way. `presented=None` = all presented.
  Ties within one count are broken uniformly at random with `rng`, not by index: the
  unforgettable (count 0) examples are the majority, so index order would prune a
  biased (data-order) prefix of them.
  """
  counts = np.asarray(counts, np.float64)
  never_learned = np.asarray(never_learned, bool)
  # The jitter lies in (-0.5, 0]: it orders ties but never crosses a count boundary.
  jitter = -0.5 * rng.random(counts.shape)
  learned_counts = counts[~never_learned]
  floor = (learned_counts.max() if learned_counts.size else 0.0) + 1.0
  priority = np.where(never_learned, -floor, -counts) + jitter
  if presented is not None:
    priority = np.where(np.asarray(presented, bool), priority, -np.inf)
  return priority


# ----------------------------------------------------------------------------------------
# InfoBatch (Qin et al. 2024)


def infobatch_epoch(losses: np.ndarray, prune_ratio: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """This epoch's (keep mask bool [N], loss weight float32 [N]) from the latest losses.

  Examples whose latest training loss is below the mean over seen examples are each
  dropped with probability r = `prune_ratio`; kept ones have their loss scaled by
  1/(1-r). Everything else (above-mean, or nan = not yet seen) is kept with weight 1.
  Unbiasedness: for a below-mean example the expected contribution to the epoch's summed
  gradient is (1-r) * 1/(1-r) * grad = grad, so the expected gradient equals the full-data
  one while about r of the easy examples cost no compute.
  """
  if not 0.0 <= prune_ratio < 1.0:
    raise ValueError(f'prune_ratio={prune_ratio} must lie in [0, 1).')
  losses = np.asarray(losses, np.float64)
  seen = np.isfinite(losses)
  # One draw per example whatever the losses, so the random stream does not depend on them.
  draws = rng.random(losses.shape)
  if not seen.any():
    return np.ones(losses.shape, bool), np.ones(losses.shape, np.float32)
  below = seen & (np.where(seen, losses, np.inf) < losses[seen].mean())
  keep = ~(below & (draws < prune_ratio))
  weight = np.where(below & keep, 1.0 / (1.0 - prune_ratio), 1.0).astype(np.float32)
  return keep, weight


def infobatch_anneal(epoch: int, num_epochs: int, anneal_fraction: float = 0.125) -> bool:
  """Whether `epoch` (0-based) trains on the full data: the last `anneal_fraction` of epochs.

  InfoBatch stops pruning for the final epochs (delta = 1 - anneal_fraction = 0.875 in the
  paper) to remove the remaining gradient bias of the rescaled, pruned epochs.
  """
  if not 0.0 <= anneal_fraction <= 1.0:
    raise ValueError(f'anneal_fraction={anneal_fraction} must lie in [0, 1].')
  # The tolerance keeps e.g. 0.875 * 200 = 175 exact under float rounding.
  return epoch >= num_epochs * (1.0 - anneal_fraction) - 1e-9
