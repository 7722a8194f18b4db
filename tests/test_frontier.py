"""The training-less frontier's arithmetic (eeprune_jax/report/frontier.py)."""

import math

import numpy as np
import pytest

from eeprune_jax.report import frontier


def test_interpolates_between_the_two_nearest_points_in_any_order():
  costs, accs = [1.0, 0.4, 0.6], [0.9, 0.5, 0.7]
  assert frontier.interpolate(costs, accs, 0.5) == pytest.approx(0.6)
  assert frontier.interpolate(costs, accs, 0.8) == pytest.approx(0.8)
  assert frontier.interpolate(costs, accs, 0.6) == pytest.approx(0.7)  # on a point
  assert frontier.interpolate(costs, accs, 1.0) == pytest.approx(0.9)  # an end


def test_outside_the_frontier_there_is_no_reading():
  costs, accs = [0.4, 1.0], [0.5, 0.9]
  assert math.isnan(frontier.interpolate(costs, accs, 0.39))
  assert math.isnan(frontier.interpolate(costs, accs, 1.05))
  assert frontier.interpolate(costs, accs, 1.0 + 1e-9) == pytest.approx(0.9)  # rounding
  assert math.isnan(frontier.interpolate([], [], 0.5))


def test_each_seed_is_read_against_its_own_frontier():
  curves = {0: ([0.4, 1.0], [0.50, 0.80]), 1: ([0.4, 1.0], [0.60, 0.90])}
  # seed 0 at 0.6: frontier 0.60, run 0.65 (+0.05); seed 1 at 0.8: frontier 0.80, run 0.75
  reading = frontier.read({0: (0.6, 0.65), 1: (0.8, 0.75), 2: (0.6, 0.9)}, curves)
  assert reading.differences == pytest.approx({0: 0.05, 1: -0.05})
  assert (reading.above, reading.read, reading.unpaired, reading.outside) == (1, 2, [2], [])
  assert reading.frontier[0] == pytest.approx(0.70)
  assert reading.frontier[1] == pytest.approx(np.std([0.6, 0.8], ddof=1))
  assert reading.difference[0] == pytest.approx(0.0)
  outside = frontier.read({0: (0.3, 0.5)}, curves)
  assert outside.outside == [0] and outside.read == 0 and math.isnan(outside.difference[0])


def test_band_and_curves_from_points():
  points = {0.4: {0: (0.41, 0.5), 1: (0.39, 0.6)}, 1.0: {0: (1.0, 0.8)}, 0.6: {}}
  band = frontier.band(points)
  np.testing.assert_allclose(band.nominal, [0.4, 1.0])
  np.testing.assert_allclose(band.cost, [0.40, 1.0])
  np.testing.assert_allclose(band.accuracy, [0.55, 0.8])
  assert band.std[0] == pytest.approx(np.std([0.5, 0.6], ddof=1)) and np.isnan(band.std[1])
  assert list(band.seeds) == [2, 1]
  assert frontier.curves(points) == {0: ([0.41, 1.0], [0.5, 0.8]), 1: ([0.39], [0.6])}


def test_parse_rejects_what_cannot_make_a_frontier():
  assert frontier.parse('1.0, 0.4,0.6') == [0.4, 0.6, 1.0]
  assert frontier.parse('') == []
  for bad, match in (('0,0.5', r'\(0, 1\]'), ('0.5,1.2', r'\(0, 1\]'), ('a,b', 'numbers'),
                     ('0.5', 'two or more')):
    with pytest.raises(ValueError, match=match):
      frontier.parse(bad)
