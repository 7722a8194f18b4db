"""Pruning methods: each turns per-example scores into a keep mask for a target.

Every method is a priority ("prune this first" = high) plus an eligibility mask, handed to
`masks.prune_top`; the direction of each priority is stated next to it and tested.
"""

from typing import Mapping

import ml_collections
import numpy as np

from eeprune_jax import baselines
from eeprune_jax import masks

# Methods that need the scoring pass (a forward pass over the training set).
SCORED_METHODS = ('eeprune', 'final_confidence', 'el2n')
# Methods that need per-example statistics gathered during training.
TRACKED_METHODS = ('forgetting', 'infobatch')
# InfoBatch prunes afresh every epoch (see train.py); it has no pruning rounds.
DYNAMIC_METHODS = ('infobatch',)
METHODS = ('none', 'random', 'random_balanced', 'grand') + SCORED_METHODS + TRACKED_METHODS


def needs_scores(method: str) -> bool:
  """Whether `method` needs the scoring forward pass before it can prune."""
  return method in SCORED_METHODS


def _eeprune_priority(scores: Mapping[str, np.ndarray], exit_index: int):
  """EEPrune: eligible = early and final exits correct; prune the most confident first."""
  labels = scores['label']
  eligible = masks.eeprune_eligible(scores['pred'][:, exit_index], scores['pred'][:, -1], labels)
  return scores['conf'][:, exit_index], eligible


def _final_confidence_priority(scores: Mapping[str, np.ndarray]):
  """Ablation without the early exit: final exit correct, prune its most confident first."""
  eligible = scores['pred'][:, -1] == scores['label']
  return scores['conf'][:, -1], eligible


def _balanced_random_priority(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Random order that interleaves classes, so any prefix takes every class evenly."""
  priority = np.empty(len(labels))
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    # Rank r within a class maps to priority -r/size: the same share of each class
    # comes first whatever the prefix length.
    ranks = rng.permutation(len(members))
    priority[members] = -(ranks + rng.random(len(members))) / len(members)
  return priority


def prune(prune_config: ml_collections.ConfigDict, *, scores: Mapping[str, np.ndarray] | None,
          labels: np.ndarray, prior_keep: np.ndarray | None, target_pruned: int,
          rng: np.random.Generator) -> masks.PruneResult:
  """Applies `prune_config.method` and returns the new (only shrinking) keep mask."""
  method = prune_config.method
  n = len(labels)
  if method == 'none':
    return masks.PruneResult(keep=masks.as_keep(prior_keep, n),
                             target_pruned=0, shortfall=0, cutoff=float('nan'))
  if method in DYNAMIC_METHODS:
    raise ValueError(f'prune.method={method!r} prunes per epoch in the train loop, not in rounds.')
  if method not in ('random', 'random_balanced') and scores is None:
    raise ValueError(f'prune.method={method!r} needs per-example scores.')
  if method == 'eeprune':
    priority, eligible = _eeprune_priority(scores, prune_config.exit)
    if prune_config.mode == 'threshold':
      return masks.prune_above_threshold(eligible, priority, prune_config.threshold, prior_keep)
  elif method == 'final_confidence':
    priority, eligible = _final_confidence_priority(scores)
    if prune_config.mode == 'threshold':
      return masks.prune_above_threshold(eligible, priority, prune_config.threshold, prior_keep)
  elif method == 'el2n':  # low EL2N (averaged over seeds) = easy = pruned first
    priority, eligible = baselines.el2n_priority(scores['el2n_runs']), np.ones(n, bool)
  elif method == 'grand':  # low gradient norm = easy = pruned first
    priority, eligible = baselines.grand_priority(scores['grand_runs']), np.ones(n, bool)
  elif method == 'forgetting':  # fewest forgetting events first; never learned last
    priority = baselines.forgetting_priority(scores['forget_counts'], scores['never_learned'],
                                             rng, scores['presented'])
    eligible = np.ones(n, bool)
  elif method == 'random':
    priority, eligible = rng.random(n), np.ones(n, bool)
  elif method == 'random_balanced':
    priority, eligible = _balanced_random_priority(labels, rng), np.ones(n, bool)
  else:
    raise ValueError(f'unknown prune.method={method!r}; choose one of {METHODS}.')
  if prune_config.class_balanced:
    return masks.prune_top_per_class(priority, eligible, target_pruned, labels, prior_keep)
  return masks.prune_top(priority, eligible, target_pruned, prior_keep)
