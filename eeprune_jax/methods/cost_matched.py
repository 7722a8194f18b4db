"""The cost-matched baseline: full data, fewer epochs, the same cost as a pruned run.

What a user who prunes to save compute must beat is not full data for the same epochs but
full data for as many (fractional) epochs as the pruned run's cost buys: `prune.cost_fraction`
x `num_epochs`, with the learning-rate schedule (warm-up, cosine to zero) compressed to
them. `compare` sets `prune.cost_fraction` from the ledger of the pruned run it is matched
with (training plus scoring, `cost_vs_full_data`), so the two cost the same within a
fraction of one step.
"""

import ml_collections

from eeprune_jax.methods import base


@base.register
class CostMatched(base.Method):
  """Trains on everything for `prune.cost_fraction` of the schedule; prunes nothing."""
  name = 'cost_matched'
  prunes = False
  matches_cost = True

  def schedule_epochs(self, config: ml_collections.ConfigDict) -> float:
    """`num_epochs` x `prune.cost_fraction`."""
    return config.train.num_epochs * config.prune.cost_fraction
