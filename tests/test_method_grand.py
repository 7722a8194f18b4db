"""GraNd: chunked per-example gradient norms, through the loop's per-example pass, against
a direct loop; the priority."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eeprune_jax import config_base
from eeprune_jax import config_checks
from eeprune_jax import data
from eeprune_jax import loop
from eeprune_jax import masks
from eeprune_jax import parallel
from eeprune_jax import train
from eeprune_jax.methods import grand
import feed_batches


class TinyNet(nn.Module):
  """Conv + BatchNorm with an early exit and a final head: returns (early, final) logits."""
  classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    early = nn.Dense(self.classes)(x)
    final = nn.Dense(self.classes)(nn.relu(nn.Dense(5)(x)))
    return early, final


def _bn_state(image_shape, mesh, classes=3):
  """TinyNet's state with non-trivial running statistics, so an eval-mode forward differs
  from a batch-stat one."""
  state = train.create_train_state(TinyNet(classes), optax.sgd(0.1), image_shape, seed=0,
                                   mesh=mesh)
  key_mean, key_var = jax.random.split(jax.random.key(1))
  stats = state.batch_stats['BatchNorm_0']
  state = state.replace(batch_stats={'BatchNorm_0': {
      'mean': jax.random.normal(key_mean, stats['mean'].shape),
      'var': 0.5 + jax.random.uniform(key_var, stats['var'].shape)}})
  return jax.device_put(state, parallel.replicated(mesh))


@pytest.fixture(scope='module')
def grand_setup():
  mesh = parallel.make_mesh()
  state = _bn_state((5, 5, 2), mesh)
  rng = np.random.default_rng(0)
  n = 40
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


@pytest.fixture(scope='module')
def digits_setup():
  """The first 40 digits (8x8) on the device backend, TinyNet on them, and the direct
  loop's norms of the images an eval pass reads, in index order."""
  mesh = parallel.make_mesh()
  cfg = config_base.base_config()
  cfg.data.train_split, cfg.data.image_size = 'train[:40]', 8
  state = _bn_state((8, 8, 1), mesh, classes=10)
  pipe = data.create_pipeline(cfg.data, batch_size=8, eval_batch_size=8, mesh=mesh, seed=0)
  rows = feed_batches.host(feed_batches.eval_batches(pipe, 'train'))
  assert np.array_equal(rows['index'][:40], np.arange(40)) and not rows['valid'][40:].any()
  expected = direct_grand(state, {k: v[:40] for k, v in rows.items()})
  assert np.all(expected > 0)
  return cfg, mesh, state, expected


@pytest.mark.parametrize('eval_batch,chunk_size',
                         [(16, 1), (16, 2), (16, 3), (16, 16), (40, 3), (40, 40)])
def test_grand_pass_equals_direct_loop(digits_setup, eval_batch, chunk_size):
  """GraNd's pass through `Programs.per_example`: every example's norm, in index order.

  Eval batch 16 = 2 rows per fake device: chunk 1 and 2 divide the shard, 3 and 16 exceed
  it (clamped); 40 rows in 3 batches, so the last is padded (dropped by the assembly).
  Eval batch 40 = 5 rows per device: chunk 3 leaves a remainder of 2 (padded).
  """
  cfg, mesh, state, expected = digits_setup
  pipe = data.create_pipeline(cfg.data, batch_size=8, eval_batch_size=eval_batch, mesh=mesh,
                              seed=0)
  programs = loop.Programs(pipe, mesh, cfg.train)
  step = grand.per_example_step(chunk_size)
  # The same function object each round and seed: it keys the compiled pass.
  assert grand.per_example_step(chunk_size) is step
  out = programs.per_example(state, 'train', step, 40)
  assert set(out) == {'index', 'grand'}
  np.testing.assert_array_equal(out['index'], np.arange(40))
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


def test_grand_priority_prunes_lowest_mean_first():
  runs = np.array([[1.0, 5.0, 2.0, 0.5], [3.0, 5.0, 2.0, 0.5]])  # means 2, 5, 2, 0.5
  priority = grand.grand_priority(runs)
  np.testing.assert_allclose(priority, [-2.0, -5.0, -2.0, -0.5])
  result = masks.prune_top(priority, np.ones(4, bool), 2)
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [0, 3])  # tie -> index 0
  np.testing.assert_allclose(grand.grand_priority(np.array([3.0, 1.0])), [-3.0, -1.0])


def test_a_chunk_below_one_is_refused_before_compute():
  cfg = config_base.base_config()
  cfg.prune.method, cfg.prune.grand_chunk = 'grand', 0
  with pytest.raises(config_checks.ConfigError, match=r'config.prune.grand_chunk=0 must be >= 1'):
    config_checks.validate(cfg)
  with pytest.raises(ValueError, match='grand_chunk=0'):
    grand.per_example_step(0)
