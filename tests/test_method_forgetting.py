"""Forgetting events: the tracker's transitions and state, and the priority's order."""

import json

import numpy as np

from eeprune_jax import masks
from eeprune_jax.methods import forgetting


def test_forgetting_transitions():
  tracker = forgetting.ForgettingTracker(4)
  # Presentations per example: 0: C I C I (2 events), 1: I C (0), 2: C C (0), 3: I I (never).
  tracker.update(np.array([0, 1, 2, 3]), np.array([True, False, True, False]))
  tracker.update(np.array([3, 0, 1]), np.array([False, False, True]))
  tracker.update(np.array([0, 2]), np.array([True, True]))
  tracker.update(np.array([0]), np.array([False]))
  np.testing.assert_array_equal(tracker.counts(), [2, 0, 0, 0])
  np.testing.assert_array_equal(tracker.never_learned(), [False, False, False, True])
  np.testing.assert_array_equal(tracker.presentations(), [4, 2, 2, 2])


def test_forgetting_first_presentation_incorrect_is_not_an_event():
  tracker = forgetting.ForgettingTracker(2)
  tracker.update(np.array([0, 1]), np.array([False, True]))
  np.testing.assert_array_equal(tracker.counts(), [0, 0])
  tracker.update(np.array([0, 1]), np.array([True, False]))  # learning event, forgetting event
  np.testing.assert_array_equal(tracker.counts(), [0, 1])


def test_forgetting_valid_mask_and_repeats():
  tracker = forgetting.ForgettingTracker(3)
  # A repeated index is two consecutive presentations in row order: C then I = 1 event.
  tracker.update(np.array([1, 2, 1, 0]), np.array([True, True, False, True]),
                 valid=np.array([True, True, True, False]))
  np.testing.assert_array_equal(tracker.counts(), [0, 1, 0])
  np.testing.assert_array_equal(tracker.presented(), [False, True, True])
  np.testing.assert_array_equal(tracker.never_learned(), [False, False, False])


def test_forgetting_state_dict_roundtrip_through_json():
  tracker = forgetting.ForgettingTracker(3)
  tracker.update(np.array([0, 1]), np.array([True, False]))
  restored = forgetting.ForgettingTracker.from_state_dict(
      json.loads(json.dumps(tracker.state_dict())))
  for t in (tracker, restored):  # both continue identically
    t.update(np.array([0, 1]), np.array([False, False]))
  np.testing.assert_array_equal(restored.counts(), tracker.counts())
  np.testing.assert_array_equal(restored.counts(), [1, 0, 0])
  np.testing.assert_array_equal(restored.never_learned(), [False, True, False])
  np.testing.assert_array_equal(restored.presented(), [True, True, False])


def test_forgetting_priority_order():
  counts = np.array([3, 0, 1, 0, 0, 7, 0])
  never = np.array([False, False, False, False, True, False, False])
  presented = np.array([True, True, True, True, True, True, False])
  priority = forgetting.forgetting_priority(counts, never, np.random.default_rng(0), presented)
  order = np.argsort(-priority, kind='stable')
  # Count-0 learned examples {1, 3} first (random order), then counts 1, 3, 7, then the
  # never-learned one, then the never-presented one.
  assert set(order[:2]) == {1, 3}
  np.testing.assert_array_equal(order[2:], [2, 0, 5, 4, 6])
  assert priority[6] == -np.inf
  assert np.isfinite(priority[4]) and priority[4] < priority[5]
  result = masks.prune_top(priority, np.ones(7, bool), 3)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [1, 2, 3])


def test_forgetting_priority_breaks_ties_randomly():
  counts = np.zeros(6)
  never = np.zeros(6, bool)
  rng = np.random.default_rng(0)
  firsts = {int(np.argmax(forgetting.forgetting_priority(counts, never, rng)))
            for _ in range(50)}
  assert len(firsts) > 3  # not always the lowest index, as an index tie-break would give
  # Same seed, same order: reproducible.
  a = forgetting.forgetting_priority(counts, never, np.random.default_rng(1))
  b = forgetting.forgetting_priority(counts, never, np.random.default_rng(1))
  np.testing.assert_array_equal(a, b)


def test_forgetting_priority_of_tracked_events():
  tracker = forgetting.ForgettingTracker(4)
  tracker.update(np.array([0, 1, 2]), np.array([True, False, True]))
  tracker.update(np.array([0, 1, 2]), np.array([False, False, True]))
  priority = forgetting.forgetting_priority(tracker.counts(), tracker.never_learned(),
                                            np.random.default_rng(0), tracker.presented())
  np.testing.assert_array_equal(np.argsort(-priority), [2, 0, 1, 3])
  assert priority[3] == -np.inf
