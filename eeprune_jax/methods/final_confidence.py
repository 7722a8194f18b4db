"""`final_confidence`: EEPrune's ablation without the early exit."""

import ml_collections
import numpy as np

from eeprune_jax.methods import base


@base.register
class FinalConfidence(base.Method):
  """Eligible: the final exit is correct; its most confident examples go first."""
  name = 'final_confidence'
  needs = base.Needs(scoring_pass=True)
  threshold_mode = True

  def scores(self, ctx: base.RoundContext) -> dict[str, np.ndarray]:
    """The scoring pass: every exit's prediction, confidence, EL2N and loss."""
    return ctx.score(ctx.state)

  def priority(self, scores: base.Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """Priority = the final exit's confidence (high = easy = pruned first)."""
    del labels, rng, config
    return scores['conf'][:, -1], scores['pred'][:, -1] == scores['label']
