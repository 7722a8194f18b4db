"""InfoBatch: the per-epoch draw (expected share, unbiased weights), annealing."""

import numpy as np
import pytest

from eeprune_jax.methods import infobatch


def test_infobatch_keeps_expected_fraction_and_weights():
  r = 0.3
  rng = np.random.default_rng(0)
  losses = np.r_[np.full(500, 0.1), np.full(500, 2.0), np.full(10, np.nan)]  # mean 1.05
  below = np.arange(1010) < 500
  kept = []
  for _ in range(40):
    keep, weight = infobatch.draw(losses, r, rng)
    assert keep.dtype == bool and weight.dtype == np.float32
    assert keep[~below].all()  # above-mean and unseen (nan) always kept
    np.testing.assert_array_equal(weight[~below], 1.0)
    np.testing.assert_array_equal(weight[below & keep], np.float32(1 / (1 - r)))
    kept.append(keep[below].mean())
  # 20,000 Bernoulli(0.7) draws: the standard error is 0.003.
  assert abs(np.mean(kept) - (1 - r)) < 0.015


def test_infobatch_expected_gradient_weight_is_one():
  # E[keep * weight] = 1 for every example: the rescaling makes the epoch unbiased.
  rng = np.random.default_rng(1)
  losses = np.array([0.1, 0.2, 5.0, np.nan])
  total = np.zeros(4)
  for _ in range(4000):
    keep, weight = infobatch.draw(losses, 0.5, rng)
    total += keep * weight
  np.testing.assert_allclose(total / 4000, 1.0, atol=0.05)


def test_infobatch_edge_cases():
  rng = np.random.default_rng(0)
  keep, weight = infobatch.draw(np.full(3, np.nan), 0.5, rng)
  assert keep.all() and (weight == 1).all()
  keep, weight = infobatch.draw(np.array([1.0, 1.0, 1.0]), 0.9, rng)
  assert keep.all() and (weight == 1).all()  # nothing strictly below the mean
  keep, weight = infobatch.draw(np.array([0.0, 1.0]), 0.0, rng)
  assert keep.all() and (weight == 1).all()
  with pytest.raises(ValueError):
    infobatch.draw(np.array([0.0, 1.0]), 1.0, rng)


def test_infobatch_anneal():
  assert [e for e in range(200) if infobatch.anneal(e, 200)] == list(range(175, 200))
  assert [e for e in range(10) if infobatch.anneal(e, 10)] == [9]
  assert [e for e in range(8) if infobatch.anneal(e, 8, 0.25)] == [6, 7]
  assert not any(infobatch.anneal(e, 8, 0.0) for e in range(8))
  assert all(infobatch.anneal(e, 8, 1.0) for e in range(8))
