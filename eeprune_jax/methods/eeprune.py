"""EEPrune: prune the examples an early exit already classifies correctly and confidently."""

import ml_collections
import numpy as np

from eeprune_jax import masks
from eeprune_jax.methods import base

# The rule lives in `masks` (whatif's agreement report reads it too, without this module).
eligible = masks.eeprune_eligible


@base.register
class EEPrune(base.Method):
  """Eligible: early exit `prune.exit` and final exit correct; the most confident go first."""
  name = 'eeprune'
  needs = base.Needs(scoring_pass=True)
  early_exit = True
  threshold_mode = True
  # The exit moves (a preset of every model); its one exit scores.
  variants = {
      'eeprune_shallow': {'model.exits': 'shallow', 'prune.exit': 0},
      'eeprune_mid': {'model.exits': 'mid', 'prune.exit': 0},
      'eeprune_deep': {'model.exits': 'deep', 'prune.exit': 0},
      'eeprune_mid_balanced': {'model.exits': 'mid', 'prune.exit': 0,
                               'prune.class_balanced': True},
  }

  def scores(self, ctx: base.RoundContext) -> dict[str, np.ndarray]:
    """The scoring pass: every exit's prediction, confidence, EL2N and loss."""
    return ctx.score(ctx.state)

  def priority(self, scores: base.Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """Priority = the early exit's confidence (high = easy = pruned first)."""
    del labels, rng
    pred, k = scores['pred'], config.exit
    return scores['conf'][:, k], eligible(pred[:, k], pred[:, -1], scores['label'])
