"""Exit heads and the early-exit network base class every backbone derives from.

A network is `stem`, `block_0` ... `block_{n-1}`, the final classifier `head`, and one
exit head `exit_k` per configured exit block (shallow to deep). `__call__` returns the
exits' logits followed by the final classifier's, all float32.
"""

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from eeprune_jax.models import layers

EXIT_HEADS = ('linear', 'sdn')


class LinearExit(nn.Module):
  """Global average pool + Dense(num_classes)."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return layers.dense(self.num_classes, self.dtype, name='fc')(layers.global_avg_pool(x))


class SDNExit(nn.Module):
  """The Shallow-Deep Networks internal classifier (Kaya et al. 2019).

  Mixed pooling alpha * maxpool + (1 - alpha) * avgpool (learnable scalar alpha, drawn
  uniformly in [0, 1) as in the reference code) reduces the map to about 4x4 with
  kernel = stride = size // 4; maps of size <= 4 are not pooled. Then flatten + Dense.
  """
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, h, w, _ = x.shape
    if min(h, w) > 4:
      window = (h // 4, w // 4)
      alpha = self.param('alpha', nn.initializers.uniform(1.0), (), jnp.float32)
      alpha = alpha.astype(x.dtype)
      x = (alpha * nn.max_pool(x, window, strides=window)
           + (1 - alpha) * nn.avg_pool(x, window, strides=window))
    x = x.reshape((x.shape[0], -1))
    return layers.dense(self.num_classes, self.dtype, name='fc')(x)


def make_exit_head(kind: str, num_classes: int, dtype: Any, name: str) -> nn.Module:
  """The exit head named by `config.model.exit_head`."""
  assert kind in EXIT_HEADS, kind  # config_checks validates config.model.exit_head
  head = LinearExit if kind == 'linear' else SDNExit
  return head(num_classes, dtype=dtype, name=name)


class EarlyExitNet(nn.Module):
  """Base class: a stem, numbered blocks, a final head, and exit heads on chosen blocks.

  Subclasses set `NUM_BLOCKS`, `PRESETS` and `STEMS`, and implement `make_stem`,
  `make_blocks` and `make_head` (called from `setup`, returning unbound modules).
  The stem, blocks and head take `(x, train)`.
  """
  num_classes: int
  stem_type: str = 'cifar'
  width: float = 1.0
  exits: tuple[int, ...] = ()
  exit_head: str = 'linear'
  dtype: Any = jnp.float32
  axis_name: str | None = None

  NUM_BLOCKS: ClassVar[int] = 0
  PRESETS: ClassVar[dict[str, tuple[int, ...]]] = {}
  STEMS: ClassVar[tuple[str, ...]] = ('cifar', 'imagenet')

  def make_stem(self) -> nn.Module:
    """The stem module (unbound), called as `stem(x, train)`."""
    raise NotImplementedError

  def make_blocks(self) -> Sequence[nn.Module]:
    """The NUM_BLOCKS blocks (unbound), each called as `block(x, train)`."""
    raise NotImplementedError

  def make_head(self) -> nn.Module:
    """The final classifier (unbound), called as `head(x, train)` on the last block."""
    raise NotImplementedError

  def setup(self):
    # config_checks validates config.model.stem and config.model.exits.
    assert self.stem_type in self.STEMS, (type(self).__name__, self.stem_type)
    assert list(self.exits) == sorted(set(self.exits)) and all(
        0 <= b < self.NUM_BLOCKS for b in self.exits), (self.exits, self.NUM_BLOCKS)
    self.stem = self.make_stem()
    blocks = list(self.make_blocks())
    assert len(blocks) == self.NUM_BLOCKS, (len(blocks), self.NUM_BLOCKS)
    # Numbered attributes (not a list) so params are `block_3`, `exit_0`, not `blocks_3`.
    for i, block in enumerate(blocks):
      setattr(self, f'block_{i}', block)
    for k in range(len(self.exits)):
      setattr(self, f'exit_{k}', make_exit_head(
          self.exit_head, self.num_classes, self.dtype, name=None))
    self.head = self.make_head()

  def features(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Runs the stem and all blocks: (final block output, every block's output)."""
    x = self.stem(x.astype(self.dtype), train)
    outputs = []
    for i in range(self.NUM_BLOCKS):
      x = getattr(self, f'block_{i}')(x, train)
      outputs.append(x)
    return x, tuple(outputs)

  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    """Logits [batch, num_classes] of each exit (shallow to deep), then the final head."""
    final, outputs = self.features(x, train)
    logits = [getattr(self, f'exit_{k}')(outputs[b]) for k, b in enumerate(self.exits)]
    logits.append(self.head(final, train))
    return tuple(l.astype(jnp.float32) for l in logits)
