"""The model registry: build early-exit networks from `config.model`, count their cost.

Names: resnet18, resnet50, resnet20, mobilenet_v3_large, mobilenet_v3_small. A model's
`apply(variables, x, train=...)` returns a tuple of float32 logits [batch, num_classes]:
one per exit (shallow to deep) and the final classifier last. Exit presets per model are
tabled in `resnet.py` and `mobilenet_v3.py`.
"""

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
from eeprune_jax.models.resnet import ResNet18, ResNet20, ResNet50

_MODELS: dict[str, type[EarlyExitNet]] = {
    'resnet18': ResNet18,
    'resnet50': ResNet50,
    'resnet20': ResNet20,
    'mobilenet_v3_large': MobileNetV3Large,
    'mobilenet_v3_small': MobileNetV3Small,
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)
STEMS: tuple[str, ...] = ('cifar', 'imagenet')
EXIT_HEADS: tuple[str, ...] = exits_lib.EXIT_HEADS
PRESETS: tuple[str, ...] = ('none', 'shallow', 'mid', 'deep')
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def _model_class(model_config) -> type[EarlyExitNet]:
  name = model_config.name
  if name not in _MODELS:
    raise ValueError(
        f'config.model.name={name!r} is not a known model; valid: {", ".join(MODEL_NAMES)}.')
  return _MODELS[name]


def num_blocks(model_config) -> int:
  """Number of backbone blocks (exit positions) of the configured network."""
  return _model_class(model_config).NUM_BLOCKS


def exit_blocks(model_config) -> tuple[int, ...]:
  """The block indices of the configured exits, shallow to deep."""
  cls = _model_class(model_config)
  n = cls.NUM_BLOCKS
  spec = str(model_config.exits).strip()
  if spec == 'none':
    return ()
  if spec in cls.PRESETS:
    return cls.PRESETS[spec]
  where = (f'{model_config.name} has {n} blocks, valid indices 0..{n - 1}; presets: '
           f'{", ".join(PRESETS)}')
  if not re.fullmatch(r'\s*\d+\s*(,\s*\d+\s*)*', spec):
    raise ValueError(
        f'config.model.exits={spec!r} is neither a preset nor comma-separated block '
        f'indices ({where}).')
  blocks = [int(b) for b in spec.split(',')]
  if len(set(blocks)) != len(blocks):
    raise ValueError(f'config.model.exits={spec!r} repeats a block ({where}).')
  if blocks != sorted(blocks):
    raise ValueError(
        f'config.model.exits={spec!r} must be sorted shallow to deep ({where}).')
  bad = [b for b in blocks if b >= n]
  if bad:
    raise ValueError(f'config.model.exits={spec!r}: blocks {bad} out of range ({where}).')
  return tuple(blocks)


def build_model(model_config, num_classes: int, axis_name: str | None = None) -> nn.Module:
  """The early-exit network described by `config.model`."""
  cls = _model_class(model_config)
  if model_config.stem not in STEMS:
    raise ValueError(
        f'config.model.stem={model_config.stem!r} is not one of {", ".join(STEMS)}.')
  if model_config.stem not in cls.STEMS:
    raise ValueError(
        f'config.model.stem={model_config.stem!r} is not supported by '
        f'{model_config.name}; valid: {", ".join(cls.STEMS)}.')
  if not float(model_config.width) > 0:
    raise ValueError(f'config.model.width={model_config.width!r} must be > 0.')
  if model_config.exit_head not in EXIT_HEADS:
    raise ValueError(
        f'config.model.exit_head={model_config.exit_head!r} is not one of '
        f'{", ".join(EXIT_HEADS)}.')
  if model_config.dtype not in _DTYPES:
    raise ValueError(
        f'config.model.dtype={model_config.dtype!r} is not one of {", ".join(_DTYPES)}.')
  if num_classes < 1:
    raise ValueError(f'num_classes={num_classes} must be >= 1.')
  return cls(
      num_classes=num_classes, stem_type=model_config.stem, width=float(model_config.width),
      exits=exit_blocks(model_config), exit_head=model_config.exit_head,
      dtype=_DTYPES[model_config.dtype], axis_name=axis_name)


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


__all__ = ['MODEL_NAMES', 'build_model', 'num_blocks', 'exit_blocks', 'count_macs', 'forward_macs',
           'exit_head_param_counts', 'param_count']
