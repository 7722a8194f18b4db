"""Forgetting events (Toneva et al. 2019): prune the examples that are never forgotten.

An example is forgotten when a training step classifies it correctly and the next
presentation of it incorrectly. The unforgettable ones are the easy ones, pruned first;
never-learned ones are the hardest, pruned last. The events are counted inside the train
program, in the per-example table (`example_table`), so the method needs no scoring pass.
"""

import ml_collections
import numpy as np

from eeprune_jax import example_table
from eeprune_jax.methods import base

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
  needs = base.Needs(example_table=True)

  def scores(self, ctx: base.RoundContext) -> dict[str, np.ndarray]:
    """The table's events: counts, never-learned and presented flags [N]."""
    table = ctx.table
    return {'index': np.arange(ctx.num_examples), 'label': ctx.labels,
            'forget_counts': np.asarray(table['forget_counts'], np.int64),
            'never_learned': example_table.never_learned(table),
            'presented': example_table.presented(table)}

  def priority(self, scores: base.Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """`forgetting_priority`: fewest events first, never learned last, unseen after."""
    del config
    priority = forgetting_priority(scores['forget_counts'], scores['never_learned'], rng,
                                   scores['presented'])
    return priority, np.ones(len(labels), bool)
