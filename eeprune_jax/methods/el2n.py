"""EL2N (Paul et al. 2021): prune the examples with the lowest error norm early in training.

EL2N = ||softmax(f(x)) - onehot(y)||_2 of the final exit, from the scoring pass. A LOW
score means the network already fits the example (easy), so it is pruned first:
priority = -mean EL2N. The paper averages over independently trained runs (seeds) to
reduce the score's variance: `prune.score_seeds` networks, the extra training charged.
"""

import ml_collections
import numpy as np

from eeprune_jax.methods import base


def mean_over_runs(runs: np.ndarray, name: str) -> np.ndarray:
  """Mean over the run axis of [R, N] scores; [N] scores are one run."""
  runs = np.asarray(runs, np.float64)
  if runs.ndim == 1:
    return runs
  if runs.ndim != 2:
    raise ValueError(f'{name} scores must be [N] or [runs, N], got shape {runs.shape}.')
  return runs.mean(axis=0)


def el2n_priority(el2n_runs: np.ndarray) -> np.ndarray:
  """Prune priority from final-exit EL2N scores [R, N] (or [N]): -mean over runs."""
  return -mean_over_runs(el2n_runs, 'EL2N')


@base.register
class EL2N(base.Method):
  """Every example eligible; the lowest mean EL2N goes first."""
  name = 'el2n'
  needs = base.Needs(scoring_pass=True)

  def scores(self, ctx: base.RoundContext) -> dict[str, np.ndarray]:
    """One scoring pass per seed network; `el2n_runs` [R, N] holds their final-exit EL2N.

    The other arrays are the last scored network's.
    """
    runs = []
    for state in ctx.seed_states():
      scores = ctx.score(state)
      runs.append(scores['el2n'][:, -1])
    return {**scores, 'el2n_runs': np.stack(runs)}

  def priority(self, scores: base.Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """Priority = -mean EL2N over runs (low = easy = pruned first)."""
    del rng, config
    return el2n_priority(scores['el2n_runs']), np.ones(len(labels), bool)
