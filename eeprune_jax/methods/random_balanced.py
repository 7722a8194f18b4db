"""`random_balanced`: a random subset that takes the same share of every class."""

import numpy as np

from eeprune_jax.methods import base
from eeprune_jax.methods import random


def balanced_random_priority(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Random order that interleaves classes, so any prefix takes every class evenly."""
  priority = np.empty(len(labels))
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    # Rank r within a class maps to priority -r/size: the same share of each class
    # comes first whatever the prefix length.
    ranks = rng.permutation(len(members))
    priority[members] = -(ranks + rng.random(len(members))) / len(members)
  return priority


@base.register
class RandomBalanced(random.Random):
  """Every example eligible; classes interleaved in a random order."""
  name = 'random_balanced'

  def draw(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`balanced_random_priority`."""
    return balanced_random_priority(labels, rng)
