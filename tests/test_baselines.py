"""Tests of the baseline pruning scores: directions, GraNd against a direct loop, trackers."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eeprune_jax import baselines
from eeprune_jax import masks
from eeprune_jax import parallel
from eeprune_jax import train

# ------------------------------------------------------------------------------- EL2N


def test_el2n_prunes_lowest_first():
  result = masks.prune_top(baselines.el2n_priority(np.array([0.1, 0.9, 0.5])),
                           np.ones(3, bool), 1)
  np.testing.assert_array_equal(result.keep, [False, True, True])


def test_el2n_averages_runs_and_prunes_exact_fraction():
  # Run means: [0.3, 0.5, 0.2, 0.8, 0.2]; index 1 is low in run 0 only.
  runs = np.array([[0.4, 0.0, 0.2, 0.8, 0.1],
                   [0.2, 1.0, 0.2, 0.8, 0.3]])
  priority = baselines.el2n_priority(runs)
  np.testing.assert_allclose(priority, [-0.3, -0.5, -0.2, -0.8, -0.2])
  # Indices 2 and 4 tie at 0.2: the lower index goes first, then index 0.
  result = masks.prune_top(priority, np.ones(5, bool), 1)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [2])
  result = masks.prune_top(priority, np.ones(5, bool), 3)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [0, 2, 4])


def test_el2n_rejects_bad_shapes():
  with pytest.raises(ValueError):
    baselines.el2n_priority(np.zeros((2, 3, 4)))

# ------------------------------------------------------------------------------ GraNd


class TinyNet(nn.Module):
  """Conv + BatchNorm with an early exit and a final head: returns (early, final) logits."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    early = nn.Dense(3)(x)
    final = nn.Dense(3)(nn.relu(nn.Dense(5)(x)))
    return early, final


@pytest.fixture(scope='module')
def grand_setup():
  mesh = parallel.make_mesh()
  state = train.create_train_state(TinyNet(), optax.sgd(0.1), (5, 5, 2), seed=0, mesh=mesh)
  # Non-trivial running statistics, so an eval-mode forward differs from a batch-stat one.
  key_mean, key_var = jax.random.split(jax.random.key(1))
  stats = state.batch_stats['BatchNorm_0']
  state = state.replace(batch_stats={'BatchNorm_0': {
      'mean': jax.random.normal(key_mean, stats['mean'].shape),
      'var': 0.5 + jax.random.uniform(key_var, stats['var'].shape)}})
  state = jax.device_put(state, parallel.replicated(mesh))
  rng = np.random.default_rng(0)
  n = 40  # tests take the first 16 (2 per fake device) or all 40 (5 per device)
  host = {'image': rng.normal(size=(n, 5, 5, 2)).astype(np.float32),
          'label': rng.integers(0, 3, n).astype(np.int32),
          'index': np.arange(n, dtype=np.int32)[::-1].copy(),
          'valid': np.ones(n, bool)}
  return mesh, state, host


def direct_grand(state, host):
  """Reference: one `jax.grad` per example of the final exit's cross-entropy."""
  def loss(params, image, label):
    logits = state.apply_fn({'params': params, 'batch_stats': state.batch_stats},
                            image[None], train=False)[-1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, label[None])[0]
  grad = jax.jit(jax.grad(loss))
  out = []
  for image, label in zip(host['image'], host['label']):
    g = grad(state.params, image, label)
    out.append(np.sqrt(sum(float(np.sum(np.square(l))) for l in jax.tree.leaves(g))))
  return np.array(out)


@pytest.mark.parametrize('num_rows,chunk_size',
                         [(16, 1), (16, 2), (16, 3), (16, 16), (40, 3), (40, 40)])
def test_grand_chunked_equals_direct_loop(grand_setup, num_rows, chunk_size):
  # 16 rows = 2 per device: chunk 1 and 2 divide the shard, 3 and 16 exceed it (clamped).
  # 40 rows = 5 per device: chunk 3 leaves a remainder of 2 on every device (padded).
  mesh, state, host = grand_setup
  host = {k: v[:num_rows] for k, v in host.items()}
  step = baselines.make_grand_step(mesh, chunk_size)
  out = parallel.global_to_host(step(state, parallel.host_to_global(mesh, host)))
  assert set(out) == {'index', 'valid', 'grand'}
  np.testing.assert_array_equal(out['index'], host['index'])
  expected = direct_grand(state, host)
  assert np.all(expected > 0)
  np.testing.assert_allclose(out['grand'], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('chunk_size', [1, 3, 5])
def test_grand_step_remainder_within_shard(grand_setup, chunk_size):
  # The per-device function on a 5-row shard: chunk 3 leaves a remainder of 2 (padded).
  _, state, host = grand_setup
  shard = {k: jnp.asarray(v[:5]) for k, v in host.items()}
  out = jax.jit(lambda s, b: baselines.grand_step(s, b, chunk_size))(state, shard)
  assert out['grand'].shape == (5,)
  expected = direct_grand(state, {k: v[:5] for k, v in host.items()})
  np.testing.assert_allclose(np.asarray(out['grand']), expected, rtol=1e-5, atol=1e-5)


def test_grand_scores_assembles_in_index_order(grand_setup):
  mesh, state, host = grand_setup
  step = baselines.make_grand_step(mesh, 3)
  host = {k: v[:16] for k, v in host.items()}
  padded = dict(host, valid=np.r_[np.ones(12, bool), np.zeros(4, bool)],
                index=np.r_[np.arange(12)[::-1], np.zeros(4)].astype(np.int32))
  scores = baselines.grand_scores(step, state, [parallel.host_to_global(mesh, padded)], 12)
  expected = direct_grand(state, host)[:12][::-1]  # row i holds index 11 - i
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_grand_priority_prunes_lowest_mean_first():
  runs = np.array([[1.0, 5.0, 2.0, 0.5], [3.0, 5.0, 2.0, 0.5]])  # means 2, 5, 2, 0.5
  priority = baselines.grand_priority(runs)
  np.testing.assert_allclose(priority, [-2.0, -5.0, -2.0, -0.5])
  result = masks.prune_top(priority, np.ones(4, bool), 2)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [0, 3])  # tie -> index 0
  np.testing.assert_allclose(baselines.grand_priority(np.array([3.0, 1.0])), [-3.0, -1.0])


def test_make_grand_step_rejects_bad_chunk():
  with pytest.raises(ValueError):
    baselines.make_grand_step(parallel.make_mesh(), 0)

# ------------------------------------------------------------------------- Forgetting


def test_forgetting_transitions():
  tracker = baselines.ForgettingTracker(4)
  # Presentations per example: 0: C I C I (2 events), 1: I C (0), 2: C C (0), 3: I I (never).
  tracker.update(np.array([0, 1, 2, 3]), np.array([True, False, True, False]))
  tracker.update(np.array([3, 0, 1]), np.array([False, False, True]))
  tracker.update(np.array([0, 2]), np.array([True, True]))
  tracker.update(np.array([0]), np.array([False]))
  np.testing.assert_array_equal(tracker.counts(), [2, 0, 0, 0])
  np.testing.assert_array_equal(tracker.never_learned(), [False, False, False, True])
  np.testing.assert_array_equal(tracker.presentations(), [4, 2, 2, 2])


def test_forgetting_first_presentation_incorrect_is_not_an_event():
  tracker = baselines.ForgettingTracker(2)
  tracker.update(np.array([0, 1]), np.array([False, True]))
  np.testing.assert_array_equal(tracker.counts(), [0, 0])
  tracker.update(np.array([0, 1]), np.array([True, False]))  # learning event, forgetting event
  np.testing.assert_array_equal(tracker.counts(), [0, 1])


def test_forgetting_valid_mask_and_repeats():
  tracker = baselines.ForgettingTracker(3)
  # A repeated index is two consecutive presentations in row order: C then I = 1 event.
  tracker.update(np.array([1, 2, 1, 0]), np.array([True, True, False, True]),
                 valid=np.array([True, True, True, False]))
  np.testing.assert_array_equal(tracker.counts(), [0, 1, 0])
  np.testing.assert_array_equal(tracker.presented(), [False, True, True])
  np.testing.assert_array_equal(tracker.never_learned(), [False, False, False])


def test_forgetting_state_dict_roundtrip_through_json():
  tracker = baselines.ForgettingTracker(3)
  tracker.update(np.array([0, 1]), np.array([True, False]))
  restored = baselines.ForgettingTracker.from_state_dict(
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
  priority = baselines.forgetting_priority(counts, never, np.random.default_rng(0), presented)
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
  firsts = {int(np.argmax(baselines.forgetting_priority(counts, never, rng)))
            for _ in range(50)}
  assert len(firsts) > 3  # not always the lowest index, as an index tie-break would give
  # Same seed, same order: reproducible.
  a = baselines.forgetting_priority(counts, never, np.random.default_rng(1))
  b = baselines.forgetting_priority(counts, never, np.random.default_rng(1))
  np.testing.assert_array_equal(a, b)


def test_forgetting_tracker_priority_matches_function():
  tracker = baselines.ForgettingTracker(4)
  tracker.update(np.array([0, 1, 2]), np.array([True, False, True]))
  tracker.update(np.array([0, 1, 2]), np.array([False, False, True]))
  priority = tracker.priority(np.random.default_rng(0))
  np.testing.assert_array_equal(np.argsort(-priority), [2, 0, 1, 3])
  assert priority[3] == -np.inf

# --------------------------------------------------------------------------- InfoBatch


def test_infobatch_keeps_expected_fraction_and_weights():
  r = 0.3
  rng = np.random.default_rng(0)
  losses = np.r_[np.full(500, 0.1), np.full(500, 2.0), np.full(10, np.nan)]  # mean 1.05
  below = np.arange(1010) < 500
  kept = []
  for _ in range(40):
    keep, weight = baselines.infobatch_epoch(losses, r, rng)
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
    keep, weight = baselines.infobatch_epoch(losses, 0.5, rng)
    total += keep * weight
  np.testing.assert_allclose(total / 4000, 1.0, atol=0.05)


def test_infobatch_edge_cases():
  rng = np.random.default_rng(0)
  keep, weight = baselines.infobatch_epoch(np.full(3, np.nan), 0.5, rng)
  assert keep.all() and (weight == 1).all()
  keep, weight = baselines.infobatch_epoch(np.array([1.0, 1.0, 1.0]), 0.9, rng)
  assert keep.all() and (weight == 1).all()  # nothing strictly below the mean
  keep, weight = baselines.infobatch_epoch(np.array([0.0, 1.0]), 0.0, rng)
  assert keep.all() and (weight == 1).all()
  with pytest.raises(ValueError):
    baselines.infobatch_epoch(np.array([0.0, 1.0]), 1.0, rng)


def test_infobatch_anneal():
  assert [e for e in range(200) if baselines.infobatch_anneal(e, 200)] == list(range(175, 200))
  assert [e for e in range(10) if baselines.infobatch_anneal(e, 10)] == [9]
  assert [e for e in range(8) if baselines.infobatch_anneal(e, 8, 0.25)] == [6, 7]
  assert not any(baselines.infobatch_anneal(e, 8, 0.0) for e in range(8))
  assert all(baselines.infobatch_anneal(e, 8, 1.0) for e in range(8))
