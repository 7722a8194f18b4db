"""A pruning method defined outside the package, as a fork would add one (test_methods.py).

Importing this module registers `small_loss`: prune the examples with the smallest
final-exit training loss first. The README's design section shows the same method.
"""

import numpy as np

from eeprune_jax import methods


@methods.register
class SmallLoss(methods.Method):
  """Every example eligible; the lowest final-exit loss goes first."""
  name = 'small_loss'
  needs = methods.Needs(scoring_pass=True)

  def scores(self, ctx):
    return {'final_loss': ctx.score(ctx.state)['loss'][:, -1]}

  def priority(self, scores, *, labels, rng, config):
    return -scores['final_loss'], np.ones(len(labels), bool)  # high priority = pruned first
