"""ResNet-18/50 (torchvision v1.5 layout) and ResNet-20/8 (He et al. 2016, CIFAR).

Blocks are numbered over all stages, and the exit presets sit at the ends of the
resolution stages (the stem is not a block):

  model      blocks  stages (block indices)           shallow  mid  deep
  resnet18   8       [0-1] [2-3] [4-5] [6-7]          1        3    5
  resnet50   16      [0-2] [3-6] [7-12] [13-15]       2        6    12
  resnet20   9       [0-2] [3-5] [6-8]                2        5    7
  resnet8    3       [0] [1] [2]                      0        1    1

The CIFAR ResNets have only three stages, so the end of their third stage is the final
classifier itself; their 'deep' preset is the last block before the final one (for
ResNet-8 that is also the end of the second stage, its 'mid').

Stems: 'imagenet' = 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (parameter counts equal
torchvision's); 'cifar' = 3x3/1 conv + BN + ReLU, no pool. ResNet-20 and -8 are CIFAR only.
"""

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eeprune_jax.models import layers
from eeprune_jax.models.exits import EarlyExitNet


def scaled(channels: int, width: float) -> int:
  """Width-scaled channel count, at least 8 so tiny widths still have usable features."""
  return max(8, int(round(channels * width)))


class Stem(nn.Module):
  """The ResNet stem."""
  features: int
  kind: str
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.kind == 'imagenet':
      x = layers.conv(self.features, 7, 2, dtype=self.dtype, name='conv')(x)
    else:
      x = layers.conv(self.features, 3, 1, dtype=self.dtype, name='conv')(x)
    x = nn.relu(layers.batch_norm(train, self.axis_name, self.dtype, name='bn')(x))
    if self.kind == 'imagenet':
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    return x


class BasicBlock(nn.Module):
  """Two 3x3 convs; `shortcut` 'conv' = 1x1 conv + BN projection, 'pad' = He et al.'s
  parameter-free option A (subsample + zero channels) when the shape changes."""
  features: int
  stride: int = 1
  shortcut: str = 'conv'
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: layers.batch_norm(train, self.axis_name, self.dtype, name=name)
    y = layers.conv(self.features, 3, self.stride, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(bn('bn1')(y))
    y = layers.conv(self.features, 3, 1, dtype=self.dtype, name='conv2')(y)
    y = bn('bn2')(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      if self.shortcut == 'conv':
        x = layers.conv(self.features, 1, self.stride, dtype=self.dtype, name='down_conv')(x)
        x = bn('down_bn')(x)
      else:
        x = x[:, ::self.stride, ::self.stride, :]
        extra = self.features - x.shape[-1]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1 x4, with a 1x1 conv projection shortcut."""
  features: int
  stride: int = 1
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: layers.batch_norm(train, self.axis_name, self.dtype, name=name)
    out = self.features * 4
    y = nn.relu(bn('bn1')(layers.conv(self.features, 1, 1, dtype=self.dtype, name='conv1')(x)))
    y = layers.conv(self.features, 3, self.stride, dtype=self.dtype, name='conv2')(y)
    y = nn.relu(bn('bn2')(y))
    y = bn('bn3')(layers.conv(out, 1, 1, dtype=self.dtype, name='conv3')(y))
    if self.stride != 1 or x.shape[-1] != out:
      x = bn('down_bn')(layers.conv(out, 1, self.stride, dtype=self.dtype, name='down_conv')(x))
    return nn.relu(x + y)


class ClassifierHead(nn.Module):
  """Global average pool + Dense(num_classes) (torchvision's avgpool + fc)."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train
    return layers.dense(self.num_classes, self.dtype, name='fc')(layers.global_avg_pool(x))


class _ResNet(EarlyExitNet):
  """A ResNet given per-stage (channels, num_blocks) and a block type."""
  STAGES: ClassVar[tuple[tuple[int, int], ...]] = ()
  STEM_CHANNELS = 64

  def make_stem(self) -> nn.Module:
    return Stem(scaled(self.STEM_CHANNELS, self.width), self.stem_type, self.dtype,
                self.axis_name)

  def make_block(self, channels: int, stride: int) -> nn.Module:
    """One block with `channels` (already width-scaled) base channels."""
    raise NotImplementedError

  def make_blocks(self) -> Sequence[nn.Module]:
    blocks = []
    for s, (channels, n) in enumerate(self.STAGES):
      for j in range(n):
        stride = 2 if s > 0 and j == 0 else 1
        blocks.append(self.make_block(scaled(channels, self.width), stride))
    return blocks

  def make_head(self) -> nn.Module:
    return ClassifierHead(self.num_classes, self.dtype)


class ResNet18(_ResNet):
  """ResNet-18: 4 stages x 2 basic blocks, 64-512 channels."""
  NUM_BLOCKS = 8
  PRESETS = {'shallow': (1,), 'mid': (3,), 'deep': (5,)}
  STAGES = ((64, 2), (128, 2), (256, 2), (512, 2))

  def make_block(self, channels: int, stride: int) -> nn.Module:
    return BasicBlock(channels, stride, 'conv', self.dtype, self.axis_name)


class ResNet50(_ResNet):
  """ResNet-50 v1.5: 3-4-6-3 bottlenecks, stride on the 3x3."""
  NUM_BLOCKS = 16
  PRESETS = {'shallow': (2,), 'mid': (6,), 'deep': (12,)}
  STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))

  def make_block(self, channels: int, stride: int) -> nn.Module:
    return Bottleneck(channels, stride, self.dtype, self.axis_name)


class ResNet20(_ResNet):
  """The CIFAR ResNet-20 of He et al.: 3 stages x 3 basic blocks, 16/32/64 channels,
  option-A (parameter-free) shortcuts."""
  NUM_BLOCKS = 9
  PRESETS = {'shallow': (2,), 'mid': (5,), 'deep': (7,)}
  STEMS = ('cifar',)
  STAGES = ((16, 3), (32, 3), (64, 3))
  STEM_CHANNELS = 16

  def make_block(self, channels: int, stride: int) -> nn.Module:
    return BasicBlock(channels, stride, 'pad', self.dtype, self.axis_name)


class ResNet8(ResNet20):
  """The shallowest CIFAR ResNet of He et al. (6n+2 layers, n=1): one basic block per stage.

  It exists for speed where the network is not what is measured: tests and smoke runs
  compile it in about half the time of ResNet-20 (XLA:CPU compile time follows depth).
  """
  NUM_BLOCKS = 3
  PRESETS = {'shallow': (0,), 'mid': (1,), 'deep': (1,)}
  STAGES = ((16, 1), (32, 1), (64, 1))
