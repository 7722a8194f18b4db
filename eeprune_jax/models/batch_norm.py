"""BatchNorm as flax's `nn.BatchNorm` computes it, averaged over devices by `parallel.pmean`.

Why not `nn.BatchNorm` itself: it averages batch statistics with `jax.lax.pmean`, which
compiles to an all-reduce even on a one-device mesh (see `parallel.psum`); this module's
average is `parallel.pmean`, a barrier there. Otherwise it is flax's module (flax 0.12,
`flax/linen/normalization.py`: `BatchNorm.__call__`, `_compute_stats` with
`use_fast_variance`, `_normalize`) op for op, over the last axis with float32 statistics
and parameters, so that both compute the same bits: `tests/test_models.py` compares them on
one device and on eight, training and eval, values and gradients.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from eeprune_jax import parallel


class BatchNorm(nn.Module):
  """Batch normalisation over the last (feature) axis; variables as `nn.BatchNorm`'s."""
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None  # of the output (None: the input's and the parameters')
  axis_name: str | None = None  # the mesh axis whose devices share batch statistics

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalises `x` by the batch's statistics (training) or the running ones (eval)."""
    features = (x.shape[-1],)
    reduction_axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      mean, var = self._batch_statistics(x, reduction_axes)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    shape = (1,) * (x.ndim - 1) + features
    mean = jnp.expand_dims(mean, reduction_axes)
    var = jnp.expand_dims(var, reduction_axes)
    y = x - mean
    mul = jax.lax.rsqrt(var + self.epsilon)
    scale = self.param('scale', nn.initializers.ones, features, jnp.float32)
    mul *= scale.reshape(shape)
    y *= mul
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    y += bias.reshape(shape)
    return jnp.asarray(y, nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype))

  def _batch_statistics(self, x: jax.Array, axes: tuple[int, ...]
                        ) -> tuple[jax.Array, jax.Array]:
    """Mean and variance (E[x^2] - E[x]^2) of `x` over `axes` and the devices."""
    x = x.astype(jnp.promote_types(self.dtype or x.dtype, jnp.float32))
    xs = (x, jax.lax.square(x))
    mu, mu2 = (v.mean(axes) for v in xs)
    # Initialisation runs outside the mesh; one reduction for both statistics, as flax.
    if self.axis_name is not None and not self.is_initializing():
      both = parallel.pmean(jnp.stack((mu, mu2), axis=0), self.axis_name)
      mu, mu2 = both[0], both[1]
    return mu, jnp.maximum(0.0, mu2 - jax.lax.square(mu))
