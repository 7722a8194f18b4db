"""Forgetting events: the scores read from the per-example table, the priority's order.
The table's counting itself: tests/test_example_table.py."""

import jax
import numpy as np

from eeprune_jax import example_table
from eeprune_jax import masks
from eeprune_jax import methods
from eeprune_jax.methods import forgetting


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


def test_forgetting_scores_read_the_table():
  table = example_table.empty(4, 2)
  # Presentations: 0: C I (1 event), 1: I I (never learned), 2: C C (0), 3: never presented.
  for correct in ([True, False, True], [False, False, True]):
    c = np.array(correct)
    table = jax.jit(example_table.record)(table, {
        'index': np.arange(3, dtype=np.int32), 'correct': np.stack([c, c], 1),
        'conf': np.zeros((3, 2), np.float32), 'loss': np.zeros((3, 2), np.float32)},
        np.int32(0))
  ctx = methods.RoundContext(config=None, state=None, epoch=1, labels=np.zeros(4, np.int32),
                             mesh=None, pipeline=None, ledger=None, score=None,
                             seed_states=None, per_example=None,
                             table=jax.device_get(table))
  scores = methods.get('forgetting').scores(ctx)
  np.testing.assert_array_equal(scores['forget_counts'], [1, 0, 0, 0])
  np.testing.assert_array_equal(scores['never_learned'], [False, True, False, False])
  np.testing.assert_array_equal(scores['presented'], [True, True, True, False])
  priority = forgetting.forgetting_priority(scores['forget_counts'], scores['never_learned'],
                                            np.random.default_rng(0), scores['presented'])
  np.testing.assert_array_equal(np.argsort(-priority), [2, 0, 1, 3])
  assert priority[3] == -np.inf
