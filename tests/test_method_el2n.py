"""EL2N: the priority direction, the mean over seed runs, shape errors."""

import numpy as np
import pytest

from eeprune_jax import masks
from eeprune_jax.methods import el2n


def test_el2n_prunes_lowest_first():
  result = masks.prune_top(el2n.el2n_priority(np.array([0.1, 0.9, 0.5])),
                           np.ones(3, bool), 1)
  np.testing.assert_array_equal(result.keep, [False, True, True])


def test_el2n_averages_runs_and_prunes_exact_fraction():
  # Run means: [0.3, 0.5, 0.2, 0.8, 0.2]; index 1 is low in run 0 only.
  runs = np.array([[0.4, 0.0, 0.2, 0.8, 0.1],
                   [0.2, 1.0, 0.2, 0.8, 0.3]])
  priority = el2n.el2n_priority(runs)
  np.testing.assert_allclose(priority, [-0.3, -0.5, -0.2, -0.8, -0.2])
  # Indices 2 and 4 tie at 0.2: the lower index goes first, then index 0.
  result = masks.prune_top(priority, np.ones(5, bool), 1)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [2])
  result = masks.prune_top(priority, np.ones(5, bool), 3)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [0, 2, 4])


def test_el2n_rejects_bad_shapes():
  with pytest.raises(ValueError):
    el2n.el2n_priority(np.zeros((2, 3, 4)))
