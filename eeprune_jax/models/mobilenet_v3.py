"""MobileNetV3-Large and -Small (Howard et al. 2019) with torchvision's block tables.

Blocks are the inverted-residual blocks (the stem conv and the last 1x1 conv are not
blocks; the last conv belongs to the final `head`). Exit presets sit at the ends of the
resolution stages, i.e. torchvision's C2/C3/C4 feature levels (output strides 4/8/16 in
the ImageNet form, 1/2/4 in the CIFAR form):

  model               blocks  stages (block indices)               shallow  mid  deep
  mobilenet_v3_large  15      [0] [1-2] [3-5] [6-11] [12-14]       2        5    11
  mobilenet_v3_small  11      [0] [1-2] [3-7] [8-10]               0        2    7

(For Large, block 0 runs at the stem's resolution, so the first stage after the stem
is blocks 0-2; for Small, block 0 is itself strided and is the first stage.)

Stems: 'imagenet' = 3x3/2 stem conv (parameter counts equal torchvision's); 'cifar' =
stride-1 stem conv and the first stride-2 block at stride 1 (output stride 8). The
classifier head is the same in both forms: 1x1 conv (6x the last block's width) + BN +
hard-swish, global average pool, Dense(1280 or 1024, scaled) + hard-swish, dropout 0.2,
Dense(num_classes). Training with dropout needs `rngs={'dropout': key}`.
"""

from typing import Any, ClassVar, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eeprune_jax.models import layers
from eeprune_jax.models.exits import EarlyExitNet


class BlockSpec(NamedTuple):
  """One row of torchvision's `bneck_conf` table (channels before width scaling)."""
  kernel: int
  expanded: int
  out: int
  use_se: bool
  hard_swish: bool
  stride: int


# input channels of each row are the previous row's `out` (16 for the first).
LARGE = (
    BlockSpec(3, 16, 16, False, False, 1),
    BlockSpec(3, 64, 24, False, False, 2),
    BlockSpec(3, 72, 24, False, False, 1),
    BlockSpec(5, 72, 40, True, False, 2),
    BlockSpec(5, 120, 40, True, False, 1),
    BlockSpec(5, 120, 40, True, False, 1),
    BlockSpec(3, 240, 80, False, True, 2),
    BlockSpec(3, 200, 80, False, True, 1),
    BlockSpec(3, 184, 80, False, True, 1),
    BlockSpec(3, 184, 80, False, True, 1),
    BlockSpec(3, 480, 112, True, True, 1),
    BlockSpec(3, 672, 112, True, True, 1),
    BlockSpec(5, 672, 160, True, True, 2),
    BlockSpec(5, 960, 160, True, True, 1),
    BlockSpec(5, 960, 160, True, True, 1),
)
SMALL = (
    BlockSpec(3, 16, 16, True, False, 2),
    BlockSpec(3, 72, 24, False, False, 2),
    BlockSpec(3, 88, 24, False, False, 1),
    BlockSpec(5, 96, 40, True, True, 2),
    BlockSpec(5, 240, 40, True, True, 1),
    BlockSpec(5, 240, 40, True, True, 1),
    BlockSpec(5, 120, 48, True, True, 1),
    BlockSpec(5, 144, 48, True, True, 1),
    BlockSpec(5, 288, 96, True, True, 2),
    BlockSpec(5, 576, 96, True, True, 1),
    BlockSpec(5, 576, 96, True, True, 1),
)


class Stem(nn.Module):
  """3x3 conv + BN + hard-swish."""
  features: int
  stride: int
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.conv(self.features, 3, self.stride, dtype=self.dtype, name='conv')(x)
    return layers.hard_swish(layers.batch_norm(train, self.axis_name, self.dtype, name='bn')(x))


class SqueezeExcite(nn.Module):
  """torchvision's SqueezeExcitation: pool, 1x1 conv + ReLU, 1x1 conv + hard-sigmoid."""
  squeeze: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.relu(layers.conv(self.squeeze, 1, use_bias=True, dtype=self.dtype, name='fc1')(s))
    s = layers.conv(x.shape[-1], 1, use_bias=True, dtype=self.dtype, name='fc2')(s)
    return x * layers.hard_sigmoid(s)


class InvertedResidual(nn.Module):
  """Expand 1x1 (skipped when expanded == input) -> depthwise kxk -> SE -> project 1x1."""
  kernel: int
  expanded: int
  out: int
  use_se: bool
  hard_swish: bool
  stride: int
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: layers.batch_norm(train, self.axis_name, self.dtype, name=name)
    act = layers.hard_swish if self.hard_swish else nn.relu
    y = x
    if self.expanded != x.shape[-1]:
      y = act(bn('expand_bn')(
          layers.conv(self.expanded, 1, dtype=self.dtype, name='expand_conv')(y)))
    y = layers.conv(self.expanded, self.kernel, self.stride, groups=self.expanded,
                    dtype=self.dtype, name='dw_conv')(y)
    y = act(bn('dw_bn')(y))
    if self.use_se:
      y = SqueezeExcite(layers.make_divisible(self.expanded // 4, 8), self.dtype, name='se')(y)
    y = bn('project_bn')(layers.conv(self.out, 1, dtype=self.dtype, name='project_conv')(y))
    if self.stride == 1 and x.shape[-1] == self.out:
      y = y + x
    return y


class ClassifierHead(nn.Module):
  """Last 1x1 conv + BN + hard-swish, pool, Dense + hard-swish, dropout, Dense."""
  last_conv: int
  last_channel: int
  num_classes: int
  dropout: float = 0.2
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.conv(self.last_conv, 1, dtype=self.dtype, name='conv')(x)
    x = layers.hard_swish(layers.batch_norm(train, self.axis_name, self.dtype, name='bn')(x))
    x = layers.global_avg_pool(x)
    x = layers.hard_swish(layers.dense(self.last_channel, self.dtype, name='fc1')(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return layers.dense(self.num_classes, self.dtype, name='fc2')(x)


class _MobileNetV3(EarlyExitNet):
  """MobileNetV3 from a block table."""
  TABLE: ClassVar[tuple[BlockSpec, ...]] = ()
  LAST_CHANNEL = 1280

  def _ch(self, c: int) -> int:
    return layers.make_divisible(c * self.width, 8)

  def make_stem(self) -> nn.Module:
    stride = 2 if self.stem_type == 'imagenet' else 1
    return Stem(self._ch(16), stride, self.dtype, self.axis_name)

  def make_blocks(self) -> Sequence[nn.Module]:
    first_strided = next(i for i, s in enumerate(self.TABLE) if s.stride == 2)
    blocks = []
    for i, s in enumerate(self.TABLE):
      stride = 1 if (self.stem_type == 'cifar' and i == first_strided) else s.stride
      blocks.append(InvertedResidual(
          s.kernel, self._ch(s.expanded), self._ch(s.out), s.use_se, s.hard_swish, stride,
          self.dtype, self.axis_name))
    return blocks

  def make_head(self) -> nn.Module:
    return ClassifierHead(6 * self._ch(self.TABLE[-1].out), self._ch(self.LAST_CHANNEL),
                          self.num_classes, 0.2, self.dtype, self.axis_name)


class MobileNetV3Large(_MobileNetV3):
  """MobileNetV3-Large: 15 blocks, 1280-wide classifier."""
  NUM_BLOCKS = 15
  PRESETS = {'shallow': (2,), 'mid': (5,), 'deep': (11,)}
  TABLE = LARGE
  LAST_CHANNEL = 1280


class MobileNetV3Small(_MobileNetV3):
  """MobileNetV3-Small: 11 blocks, 1024-wide classifier."""
  NUM_BLOCKS = 11
  PRESETS = {'shallow': (0,), 'mid': (2,), 'deep': (7,)}
  TABLE = SMALL
  LAST_CHANNEL = 1024
