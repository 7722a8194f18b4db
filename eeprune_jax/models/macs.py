"""Multiply-accumulate counting by intercepting Conv/Dense calls under `jax.eval_shape`.

Only convolutions (out_h * out_w * out_c * k_h * k_w * in_c / groups) and Dense layers
(in * out) count, per example; BatchNorm, activations, pooling and residual additions do
not (the convention behind torchvision's published figures). Each call is attributed to
its top-level submodule of the network: `stem`, `block_i`, `exit_k` or `head`.
"""

import collections
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _layer_macs(module: nn.Module, x: Any, y: Any) -> int:
  """MACs of one Conv/Dense call on a batch of one."""
  if isinstance(module, nn.Conv):
    groups = module.feature_group_count
    return (math.prod(y.shape[:-1]) * y.shape[-1] * math.prod(module.kernel_size)
            * x.shape[-1] // groups)
  return math.prod(x.shape[:-1]) * x.shape[-1] * y.shape[-1]


def macs_by_module(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, int]:
  """MACs per example of each top-level submodule (stem, block_i, exit_k, head)."""
  return dict(_macs_by_module(model, tuple(image_shape)))


# A run asks for its exits' MACs and for the full forward pass: one trace of the network
# answers both (unbound linen modules hash and compare by their fields).
@functools.lru_cache(maxsize=16)
def _macs_by_module(model: nn.Module, image_shape: tuple[int, int, int]
                    ) -> tuple[tuple[str, int], ...]:
  totals: dict[str, int] = collections.defaultdict(int)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == '__call__' and isinstance(module, (nn.Conv, nn.Dense)):
      path = module.scope.path
      totals[path[0] if path else ''] += _layer_macs(module, args[0], out)
    return out

  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return tuple(totals.items())


def count_macs(model: nn.Module, image_shape: tuple[int, int, int]) -> list[int]:
  """MACs per example up to and including each exit head, then the full final path."""
  per = macs_by_module(model, image_shape)
  block = lambda i: per.get(f'block_{i}', 0)
  stem = per.get('stem', 0)
  result = []
  for k, b in enumerate(model.exits):
    result.append(stem + sum(block(i) for i in range(b + 1)) + per.get(f'exit_{k}', 0))
  result.append(stem + sum(block(i) for i in range(model.NUM_BLOCKS)) + per.get('head', 0))
  return result


def forward_macs(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
  """MACs per example of one full `model.apply`: backbone, every exit head and the head."""
  return sum(macs_by_module(model, image_shape).values())
