"""The model registry: build early-exit networks from `config.model`, count their cost.

`config_checks` validates `config.model` (names, stems, exits); the code here asserts it.

Names: resnet18, resnet50, resnet20, resnet8, mobilenet_v3_large, mobilenet_v3_small. A model's
`apply(variables, x, train=...)` returns a tuple of float32 logits [batch, num_classes]:
one per exit (shallow to deep) and the final classifier last. Exit presets per model are
tabled in `resnet.py` and `mobilenet_v3.py`.
"""

import functools
import math
import re
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from eeprune_jax.models import exits as exits_lib
from eeprune_jax.models import macs as macs_lib
from eeprune_jax.models.exits import EarlyExitNet
from eeprune_jax.models.mobilenet_v3 import MobileNetV3Large, MobileNetV3Small
from eeprune_jax.models.resnet import ResNet18, ResNet20, ResNet50, ResNet8

_MODELS: dict[str, type[EarlyExitNet]] = {
    'resnet18': ResNet18,
    'resnet50': ResNet50,
    'resnet20': ResNet20,
    'resnet8': ResNet8,
    'mobilenet_v3_large': MobileNetV3Large,
    'mobilenet_v3_small': MobileNetV3Small,
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)
STEMS: tuple[str, ...] = ('cifar', 'imagenet')
EXIT_HEADS: tuple[str, ...] = exits_lib.EXIT_HEADS
PRESETS: tuple[str, ...] = ('none', 'shallow', 'mid', 'deep')
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
DTYPES: tuple[str, ...] = tuple(_DTYPES)
_UNCHECKED = 'config.model is invalid: config_checks.validate says why'


def model_class(name: str) -> type[EarlyExitNet]:
  """The network class registered as `name` (NUM_BLOCKS, PRESETS, STEMS)."""
  assert name in _MODELS, (_UNCHECKED, name)
  return _MODELS[name]


def num_blocks(model_config) -> int:
  """Number of backbone blocks (exit positions) of the configured network."""
  return model_class(model_config.name).NUM_BLOCKS


def exit_blocks(model_config) -> tuple[int, ...]:
  """The block indices of the configured exits, shallow to deep."""
  cls = model_class(model_config.name)
  spec = str(model_config.exits).strip()
  if spec == 'none':
    return ()
  if spec in cls.PRESETS:
    return cls.PRESETS[spec]
  blocks = tuple(int(b) for b in spec.split(','))
  assert list(blocks) == sorted(set(blocks)) and blocks[-1] < cls.NUM_BLOCKS, (
      _UNCHECKED, spec)
  return blocks


def build_model(model_config, num_classes: int, axis_name: str | None = None) -> nn.Module:
  """The early-exit network described by `config.model` (validated by `config_checks`).

  Equal descriptions give the same module object: a train state holds its `apply`, a
  method bound to it, and the programs traced for one run's state serve another's only
  when that method is the same object's.
  """
  cls = model_class(model_config.name)
  assert (model_config.stem in cls.STEMS and float(model_config.width) > 0
          and model_config.exit_head in EXIT_HEADS and model_config.dtype in _DTYPES
          and num_classes >= 1), (_UNCHECKED, model_config, num_classes)
  return _build(cls, num_classes, model_config.stem, float(model_config.width),
                exit_blocks(model_config), model_config.exit_head,
                _DTYPES[model_config.dtype], axis_name)


@functools.lru_cache(maxsize=None)
def _build(cls, num_classes, stem_type, width, exits, exit_head, dtype, axis_name):
  return cls(num_classes=num_classes, stem_type=stem_type, width=width, exits=exits,
             exit_head=exit_head, dtype=dtype, axis_name=axis_name)


def count_macs(model: nn.Module, image_shape: tuple[int, int, int]) -> list[int]:
  """MACs per example up to and including each exit (shallow to deep), then the full net."""
  return macs_lib.count_macs(model, tuple(image_shape))


def forward_macs(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
  """MACs per example of one full forward pass with every exit head (what training runs)."""
  return macs_lib.forward_macs(model, tuple(image_shape))


def _params_of(params: Mapping[str, Any]) -> Mapping[str, Any]:
  # Accept a whole variables dict as well as its 'params' collection.
  return params['params'] if 'params' in params else params


def param_count(params: Any) -> int:
  """Number of scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def exit_head_param_counts(params: Mapping[str, Any]) -> list[int]:
  """Parameter count of each exit head `exit_k`, shallow to deep."""
  params = _params_of(params)
  keys = sorted((k for k in params if re.fullmatch(r'exit_\d+', k)),
                key=lambda k: int(k.split('_')[1]))
  return [param_count(params[k]) for k in keys]


__all__ = ['DTYPES', 'MODEL_NAMES', 'model_class', 'build_model', 'num_blocks', 'exit_blocks',
           'count_macs', 'forward_macs', 'exit_head_param_counts', 'param_count']
