"""Shared layer factories: convs, BatchNorm, activations and channel rounding."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# torchvision initialises every conv kernel with kaiming normal, fan_out, relu gain.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

hard_swish: Callable[[jax.Array], jax.Array] = jax.nn.hard_swish
hard_sigmoid: Callable[[jax.Array], jax.Array] = jax.nn.hard_sigmoid


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """torchvision's `_make_divisible`: round to a multiple of `divisor`, losing <= 10%."""
  if min_value is None:
    min_value = divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def conv(features: int, kernel: int, stride: int = 1, *, groups: int = 1,
         use_bias: bool = False, dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """A square conv with PyTorch's symmetric `kernel // 2` padding (not 'SAME')."""
  # 'SAME' pads (0, 1) for stride-2 3x3 convs on even inputs; PyTorch pads (1, 1), and
  # matching it keeps the ImageNet forms layer-for-layer equal to torchvision.
  pad = (kernel - 1) // 2
  return nn.Conv(
      features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
      feature_group_count=groups, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=conv_kernel_init, name=name)


def batch_norm(train: bool, axis_name: str | None, dtype: Any,
               name: str | None = None) -> nn.BatchNorm:
  """BatchNorm whose batch statistics are averaged over `axis_name` when training."""
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5,
      axis_name=axis_name if train else None, dtype=dtype, param_dtype=jnp.float32,
      name=name)


def dense(features: int, dtype: Any, name: str | None = None) -> nn.Dense:
  """A Dense layer computing in `dtype` with float32 params."""
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name)


def global_avg_pool(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, C]."""
  return jnp.mean(x, axis=(1, 2))
