"""Keep masks: exact-fraction and threshold selection by priority, and mask statistics.

A keep mask is a bool array over the canonical training indices 0..N-1: True = train on it.
Pruned sets only grow: every function here takes the previous mask and never revives an
example it pruned.
"""

import dataclasses
import hashlib

import numpy as np


@dataclasses.dataclass(frozen=True)
class PruneResult:
  """A new keep mask and how it came about."""
  keep: np.ndarray  # bool [N]
  target_pruned: int  # how many examples should be pruned in total
  shortfall: int  # target_pruned - actually pruned (> 0 when too few were eligible)
  # The lowest priority among the pruned examples (the effective threshold); nan if none.
  cutoff: float


def as_keep(prior_keep: np.ndarray | None, n: int) -> np.ndarray:
  """A copy of `prior_keep`, or all-True when there is none, checked to have length n."""
  if prior_keep is None:
    return np.ones(n, bool)
  prior_keep = np.asarray(prior_keep, bool)
  if prior_keep.shape != (n,):
    raise ValueError(f'keep mask has shape {prior_keep.shape}, the scores cover {n} examples: '
                     'a mask must have one entry per training example.')
  return prior_keep.copy()


def prune_above_threshold(eligible: np.ndarray, confidence: np.ndarray, threshold: float,
                          prior_keep: np.ndarray | None = None) -> PruneResult:
  """Prunes every eligible example whose confidence is strictly above `threshold`."""
  keep = as_keep(prior_keep, len(eligible))
  newly = eligible & (confidence > threshold) & keep
  keep[newly] = False
  pruned = ~keep
  cutoff = float(confidence[newly].min()) if newly.any() else float('nan')
  return PruneResult(keep=keep, target_pruned=int(pruned.sum()), shortfall=0, cutoff=cutoff)


def prune_top(priority: np.ndarray, eligible: np.ndarray, target_pruned: int,
              prior_keep: np.ndarray | None = None) -> PruneResult:
  """Prunes eligible examples, highest `priority` first, until `target_pruned` are pruned.

  Examples pruned before count towards the target and stay pruned. Ties in priority go to
  the lower index, so the result is a deterministic function of the inputs. If fewer are
  eligible, all eligible ones are pruned and `shortfall` says how many are missing.
  """
  n = len(priority)
  keep = as_keep(prior_keep, n)
  if not 0 <= target_pruned <= n:
    raise ValueError(f'target_pruned={target_pruned} is outside [0, {n}].')
  needed = target_pruned - int((~keep).sum())
  candidates = np.flatnonzero(np.asarray(eligible, bool) & keep)
  if needed <= 0 or not len(candidates):
    return PruneResult(keep=keep, target_pruned=target_pruned,
                       shortfall=max(needed, 0), cutoff=float('nan'))
  # lexsort sorts by the last key first: priority descending, then index ascending.
  order = np.lexsort((candidates, -np.asarray(priority, np.float64)[candidates]))
  chosen = candidates[order[:needed]]
  keep[chosen] = False
  return PruneResult(keep=keep, target_pruned=target_pruned,
                     shortfall=needed - len(chosen),
                     cutoff=float(np.asarray(priority)[chosen].min()))


def class_quotas(total: int, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Splits `total` over classes in proportion to their sizes, summing exactly to `total`.

  Largest-remainder rounding; leftover units go to the larger remainders (ties to the lower
  class).
  """
  counts = np.bincount(labels, minlength=num_classes)
  exact = total * counts / max(counts.sum(), 1)
  quotas = np.floor(exact).astype(int)
  leftover = total - quotas.sum()
  order = np.lexsort((np.arange(num_classes), -(exact - quotas)))
  quotas[order[:leftover]] += 1
  return quotas


def prune_top_per_class(priority: np.ndarray, eligible: np.ndarray, target_pruned: int,
                        labels: np.ndarray, prior_keep: np.ndarray | None = None
                        ) -> PruneResult:
  """`prune_top` within each class, so every class loses the same share (class quotas)."""
  n = len(priority)
  keep = as_keep(prior_keep, n)
  labels = np.asarray(labels)
  num_classes = int(labels.max()) + 1
  quotas = class_quotas(target_pruned, labels, num_classes)
  shortfall, cutoffs = 0, []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    result = prune_top(np.asarray(priority)[members], np.asarray(eligible)[members],
                       int(quotas[c]), keep[members])
    keep[members] = result.keep
    shortfall += result.shortfall
    cutoffs.append(result.cutoff)
  cutoff = float(np.nanmin(cutoffs)) if not np.all(np.isnan(cutoffs)) else float('nan')
  return PruneResult(keep=keep, target_pruned=target_pruned, shortfall=shortfall, cutoff=cutoff)


def cumulative_targets(num_examples: int, fraction: float, num_rounds: int) -> list[int]:
  """Total pruned after each of `num_rounds` rounds, rising evenly to round(fraction * N)."""
  return [int(round(fraction * num_examples * (r + 1) / num_rounds)) for r in range(num_rounds)]


def pruned_share_by_class(keep: np.ndarray, labels: np.ndarray,
                          num_classes: int) -> list[float]:
  """Share of each class's training examples that is pruned."""
  total = np.bincount(labels, minlength=num_classes)
  pruned = np.bincount(labels[~keep], minlength=num_classes)
  return [float(p / t) if t else 0.0 for p, t in zip(pruned, total)]


def emptied_classes(keep: np.ndarray, labels: np.ndarray, num_classes: int,
                    threshold: float) -> list[int]:
  """Classes (with examples) of which a share >= `threshold` is pruned, ascending."""
  shares = pruned_share_by_class(np.asarray(keep, bool), np.asarray(labels), num_classes)
  totals = np.bincount(labels, minlength=num_classes)
  return [c for c in range(num_classes) if totals[c] and shares[c] >= threshold]


def eeprune_eligible(early_pred: np.ndarray, final_pred: np.ndarray,
                     labels: np.ndarray) -> np.ndarray:
  """EEPrune's eligibility: the early exit and the final exit both classify correctly."""
  return (early_pred == labels) & (final_pred == labels)


def eeprune_decision_margin(scores: dict, exit_index: int, cutoff: float) -> np.ndarray:
  """How far each example is from flipping EEPrune's decision, in probability units.

  For an eligible example (early and final exit correct): |early-exit confidence - cutoff|
  (the confidence that decides fraction and threshold mode alike). For an ineligible one:
  the largest gap, over the exits that misclassify it, between the winning probability and
  the true label's (exp(-loss)), i.e. how much the label must gain to win. Small = near
  the boundary: two runs that differ at float level disagree on these examples first.
  """
  labels = np.asarray(scores['label'])
  cols = [exit_index, -1]
  pred, conf = scores['pred'][:, cols], scores['conf'][:, cols]
  label_prob = np.exp(-np.asarray(scores['loss'], np.float64)[:, cols])
  wrong = pred != labels[:, None]
  gap = np.where(wrong, conf - label_prob, 0.0).max(1)
  return np.where(wrong.any(1), gap, np.abs(conf[:, 0] - cutoff))


def mask_stats(keep: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """Overall and per-class pruning statistics of a keep mask, JSON-ready."""
  keep = np.asarray(keep, bool)
  return {
      'num_examples': int(keep.size),
      'num_kept': int(keep.sum()),
      'num_pruned': int((~keep).sum()),
      'pruned_fraction': float((~keep).mean()) if keep.size else 0.0,
      'pruned_fraction_per_class': pruned_share_by_class(keep, labels, num_classes),
      # A fingerprint to check that runs, hosts or backends produced the same mask.
      'keep_mask_sha256': hashlib.sha256(np.packbits(keep).tobytes()).hexdigest(),
  }
