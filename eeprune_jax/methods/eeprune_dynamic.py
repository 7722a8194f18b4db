"""Dynamic EEPrune: skip a fresh random share of the EEPrune-easy examples every epoch.

EEPrune's rule, read from each example's latest training pass instead of a scoring pass:
an example is eligible when, in the last epoch it was trained on, the early exit
`prune.exit` and the final exit were both correct and the early exit's confidence was
above `prune.threshold`. Every epoch from `prune.epoch` on:

- exactly k = round(`prune.fraction` * M) of the M eligible examples are skipped, drawn
  uniformly at random without replacement (seeded by (seed, epoch), as InfoBatch, so a
  resumed run redraws the same epoch). `prune.fraction` is therefore the share of the
  eligible examples skipped each epoch, not a share of the training set;
- the eligible examples that stay have their loss scaled by M / (M - k), which is
  1 / (1 - fraction) up to the rounding of k: every eligible example stays with
  probability (M - k) / M, so its expected weight is exactly 1 (an unbiased epoch);
- the rest (not eligible, or never trained on) train with weight 1.

Because the skipped set is redrawn every epoch, every example keeps being revisited and
its last-pass scores refresh. The last `prune.infobatch_anneal` of the epochs (InfoBatch's
anneal rule and field) and every epoch before `prune.epoch` train on the full data. There
is no scoring pass: the ledger charges no scoring cost.
"""

import ml_collections
import numpy as np

from eeprune_jax.methods import base
from eeprune_jax.methods import infobatch


def eligible(last_pass: dict[str, np.ndarray], exit_index: int, threshold: float) -> np.ndarray:
  """EEPrune's rule on a last-pass table (`correct`, `conf` [N, E+1], `epoch` [N])."""
  correct = np.asarray(last_pass['correct'], bool)
  seen = np.asarray(last_pass['epoch']) >= 0
  confident = np.asarray(last_pass['conf'], np.float32)[:, exit_index] > threshold
  # eeprune.eligible (both exits correct) on stored correctness, plus the threshold.
  return seen & correct[:, exit_index] & correct[:, -1] & confident


def draw(eligible_mask: np.ndarray, fraction: float,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(keep bool [N], loss weight float32 [N]): skip round(fraction * M) of the M eligible."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'fraction={fraction} must lie in [0, 1).')
  eligible_mask = np.asarray(eligible_mask, bool)
  n = len(eligible_mask)
  candidates = np.flatnonzero(eligible_mask)
  k = int(round(fraction * len(candidates)))
  keep, weight = np.ones(n, bool), np.ones(n, np.float32)
  if k == 0:
    return keep, weight
  keep[rng.choice(candidates, size=k, replace=False)] = False
  weight[eligible_mask & keep] = len(candidates) / (len(candidates) - k)
  return keep, weight


@base.register
class EEPruneDynamic(base.Method):
  """Each epoch skips a random `prune.fraction` of the examples EEPrune's rule marks easy."""
  name = 'eeprune_dynamic'
  needs = base.Needs(example_table=True, epoch_mask=True)
  early_exit = True

  def epoch_mask(self, config: ml_collections.ConfigDict, epoch: int,
                 table: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's mask and weights; full data before `prune.epoch` and when annealing
    (and, with nothing eligible, before any example was trained on)."""
    p, n = config.prune, len(table['epoch'])
    if epoch < p.epoch or infobatch.anneal(epoch, config.train.num_epochs, p.infobatch_anneal):
      return np.ones(n, bool), np.ones(n, np.float32)
    return draw(eligible(table, p.exit, p.threshold), p.fraction,
                np.random.default_rng([config.seed, epoch]))

