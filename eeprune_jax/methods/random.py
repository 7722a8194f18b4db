"""`random`: a uniformly random subset, the baseline every score must beat."""

import ml_collections
import numpy as np

from eeprune_jax.methods import base


@base.register
class Random(base.Method):
  """Every example eligible, in a random order drawn from the run's host RNG."""
  name = 'random'

  def draw(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform draw per example."""
    return rng.random(len(labels))

  def priority(self, scores: base.Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """Priority = `draw`."""
    del scores, config
    return self.draw(labels, rng), np.ones(len(labels), bool)
