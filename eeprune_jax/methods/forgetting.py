"""Forgetting events (Toneva et al. 2019): prune the examples that are never forgotten.

An example is forgotten when a training step classifies it correctly and the next
presentation of it incorrectly. The unforgettable ones are the easy ones, pruned first;
never-learned ones are the hardest, pruned last. The events are counted on the host from
every train step's rows (`tracking.ExampleStats`), so the method needs no scoring pass.
"""

from typing import Any

import ml_collections
import numpy as np

from eeprune_jax.methods import base

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


@base.register
class Forgetting(base.Method):
  """Every example eligible; the fewest forgetting events go first."""
  name = 'forgetting'
  needs = base.Needs(training_rows=True)

  def scores(self, ctx: base.RoundContext) -> dict[str, np.ndarray]:
    """The tracked events: counts, never-learned and presented flags [N]."""
    f = ctx.stats.forgetting
    return {'index': np.arange(ctx.num_examples), 'label': ctx.labels,
            'forget_counts': f.counts(), 'never_learned': f.never_learned(),
            'presented': f.presented()}

  def priority(self, scores: base.Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """`forgetting_priority`: fewest events first, never learned last, unseen after."""
    del config
    priority = forgetting_priority(scores['forget_counts'], scores['never_learned'], rng,
                                   scores['presented'])
    return priority, np.ones(len(labels), bool)
