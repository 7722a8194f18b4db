"""GraNd: chunked per-example gradient norms against a direct loop, and the priority."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eeprune_jax import masks
from eeprune_jax import parallel
from eeprune_jax import train
from eeprune_jax.methods import grand


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
  step = grand.make_grand_step(mesh, chunk_size)
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
  out = jax.jit(lambda s, b: grand.grand_step(s, b, chunk_size))(state, shard)
  assert out['grand'].shape == (5,)
  expected = direct_grand(state, {k: v[:5] for k, v in host.items()})
  np.testing.assert_allclose(np.asarray(out['grand']), expected, rtol=1e-5, atol=1e-5)


def test_grand_scores_assembles_in_index_order(grand_setup):
  mesh, state, host = grand_setup
  step = grand.make_grand_step(mesh, 3)
  host = {k: v[:16] for k, v in host.items()}
  padded = dict(host, valid=np.r_[np.ones(12, bool), np.zeros(4, bool)],
                index=np.r_[np.arange(12)[::-1], np.zeros(4)].astype(np.int32))
  scores = grand.grand_scores(step, state, [parallel.host_to_global(mesh, padded)], 12)
  expected = direct_grand(state, host)[:12][::-1]  # row i holds index 11 - i
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_grand_priority_prunes_lowest_mean_first():
  runs = np.array([[1.0, 5.0, 2.0, 0.5], [3.0, 5.0, 2.0, 0.5]])  # means 2, 5, 2, 0.5
  priority = grand.grand_priority(runs)
  np.testing.assert_allclose(priority, [-2.0, -5.0, -2.0, -0.5])
  result = masks.prune_top(priority, np.ones(4, bool), 2)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [0, 3])  # tie -> index 0
  np.testing.assert_allclose(grand.grand_priority(np.array([3.0, 1.0])), [-3.0, -1.0])


def test_make_grand_step_rejects_bad_chunk():
  with pytest.raises(ValueError):
    grand.make_grand_step(parallel.make_mesh(), 0)
