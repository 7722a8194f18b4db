"""InfoBatch (Qin et al. 2024): soft-prune a fresh random subset of easy examples every epoch.

Instead of a permanent keep mask, every epoch from `prune.epoch` on drops each example
whose latest training loss is below the mean with probability `prune.fraction`, and
scales the loss of the kept ones so the epoch's expected gradient is unchanged. The last
`prune.infobatch_anneal` of the epochs train on the full data.
"""

import ml_collections
import numpy as np

from eeprune_jax import example_table
from eeprune_jax.methods import base


def draw(losses: np.ndarray, prune_ratio: float,
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


def anneal(epoch: int, num_epochs: int, anneal_fraction: float = 0.125) -> bool:
  """Whether `epoch` (0-based) trains on the full data: the last `anneal_fraction` of epochs.

  InfoBatch stops pruning for the final epochs (delta = 1 - anneal_fraction = 0.875 in the
  paper) to remove the remaining gradient bias of the rescaled, pruned epochs.
  """
  if not 0.0 <= anneal_fraction <= 1.0:
    raise ValueError(f'anneal_fraction={anneal_fraction} must lie in [0, 1].')
  # The tolerance keeps e.g. 0.875 * 200 = 175 exact under float rounding.
  return epoch >= num_epochs * (1.0 - anneal_fraction) - 1e-9


@base.register
class InfoBatch(base.Method):
  """Per-epoch soft pruning of below-mean-loss examples, with rescaled losses."""
  name = 'infobatch'
  needs = base.Needs(example_table=True, epoch_mask=True)

  def epoch_mask(self, config: ml_collections.ConfigDict, epoch: int,
                 table: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's mask and weights; the full data before `prune.epoch` and when annealing."""
    n, p = len(table['epoch']), config.prune
    if epoch < p.epoch or anneal(epoch, config.train.num_epochs, p.infobatch_anneal):
      return np.ones(n, bool), np.ones(n, np.float32)
    # Seeded by (seed, epoch), so a resumed run redraws the same epoch.
    return draw(example_table.last_loss(table), p.fraction,
                np.random.default_rng([config.seed, epoch]))
