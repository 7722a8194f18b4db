"""The per-example table's update: forgetting counts, ever-correct and the latest pass,
against a host reference fed the same rows (tests/forgetting_reference.py)."""

import jax
import numpy as np

from eeprune_jax import example_table
from forgetting_reference import ForgettingReference

_record = jax.jit(example_table.record)


def _step(table, index, correct, loss=None, epoch=0):
  """One step's rows: final-exit `correct` (the early exit's is its negation) and `loss`."""
  index = np.asarray(index, np.int32)
  correct = np.asarray(correct, bool)
  loss = np.zeros(len(index), np.float32) if loss is None else np.asarray(loss, np.float32)
  rows = {'index': index, 'correct': np.stack([~correct, correct], 1),
          'conf': np.stack([loss, 1 - loss], 1), 'loss': np.stack([2 * loss, loss], 1)}
  return _record(table, rows, np.int32(epoch))


def _check(table, ref):
  table = jax.device_get(table)
  np.testing.assert_array_equal(table['forget_counts'], ref.counts)
  np.testing.assert_array_equal(example_table.never_learned(table), ref.never_learned())
  np.testing.assert_array_equal(example_table.presented(table), ref.presented())
  np.testing.assert_array_equal(example_table.last_loss(table), ref.last_loss)


def test_forgetting_transitions():
  table, ref = example_table.empty(4, 2), ForgettingReference(4)
  # Presentations per example: 0: C I C I (2 events), 1: I C (0), 2: C C (0), 3: I I (never).
  for index, correct in [([0, 1, 2, 3], [True, False, True, False]),
                         ([3, 0, 1], [False, False, True]), ([0, 2], [True, True]),
                         ([0], [False])]:
    table = _step(table, index, correct)
    ref.update(index, correct)
  _check(table, ref)
  np.testing.assert_array_equal(table['forget_counts'], [2, 0, 0, 0])
  np.testing.assert_array_equal(example_table.never_learned(table), [False, False, False, True])


def test_a_first_incorrect_presentation_is_no_event_and_padding_changes_nothing():
  table = _step(example_table.empty(3, 2), [0, 1, -1], [False, True, True])
  np.testing.assert_array_equal(table['forget_counts'], [0, 0, 0])
  table = _step(table, [-1, 0, 1], [True, True, False])  # learning event, forgetting event
  np.testing.assert_array_equal(table['forget_counts'], [0, 1, 0])
  np.testing.assert_array_equal(example_table.presented(table), [True, True, False])
  assert np.isnan(example_table.last_loss(table)[2])  # never trained: NaN, as InfoBatch reads


def test_random_steps_equal_the_host_reference_exactly():
  rng = np.random.default_rng(0)
  n, b = 60, 16
  table, ref = example_table.empty(n, 2), ForgettingReference(n)
  for step in range(40):
    index = rng.choice(n - 5, b, replace=False).astype(np.int32)  # the last 5: never
    index[rng.random(b) < 0.1] = -1  # padding rows
    correct = (rng.random(b) < 0.6) & (index < n - 10)  # 50-54: never learned
    loss = rng.random(b).astype(np.float32)
    table = _step(table, index, correct, loss, epoch=step // 4)
    ref.update(index, correct, loss)
  _check(table, ref)
  assert ref.counts.max() >= 3 and ref.never_learned().any() and not ref.presented().all()
