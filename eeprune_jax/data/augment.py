"""Per-example image augmentation in JAX (used by the device-resident backend).

Every function takes one uint8 image [H, W, C] and a PRNG key and is meant to be vmapped;
the key of an example is `fold_in(fold_in(key(seed), epoch), index)`, so its augmentation
depends only on (seed, epoch, index), not on batch composition or step.

* 'cifar': zero padding of 4 pixels on each side (as torchvision's RandomCrop(padding=4)),
  a random H x W crop, and a horizontal flip with probability 1/2.
* 'imagenet': random resized crop (area 8%..100%, aspect ratio 3/4..4/3, one draw,
  clipped to the image; bilinear, antialiased) back to H x W, then a flip. The device
  backend holds images already resized to image_size, so its eval view is the image as
  is (the tf.data backend does resize + 87.5% center crop from the stored image).
* 'none': identity.
"""

import math

import jax
import jax.numpy as jnp

CIFAR_PAD = 4
KINDS = ('cifar', 'imagenet', 'none')  # config.data.augment


def cifar_augment(image: jax.Array, key: jax.Array) -> jax.Array:
  """Pad-4 (zeros) random crop + horizontal flip of one uint8 [H,W,C] image."""
  h, w, c = image.shape
  k_y, k_x, k_f = jax.random.split(key, 3)
  padded = jnp.pad(image, ((CIFAR_PAD, CIFAR_PAD), (CIFAR_PAD, CIFAR_PAD), (0, 0)))
  dy = jax.random.randint(k_y, (), 0, 2 * CIFAR_PAD + 1)
  dx = jax.random.randint(k_x, (), 0, 2 * CIFAR_PAD + 1)
  crop = jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, c))
  return jnp.where(jax.random.bernoulli(k_f), crop[:, ::-1], crop)


def imagenet_augment(image: jax.Array, key: jax.Array) -> jax.Array:
  """Random resized crop + horizontal flip of one uint8 [H,W,C] image (uint8 out)."""
  h, w, c = image.shape
  k_a, k_r, k_y, k_x, k_f = jax.random.split(key, 5)
  area = jax.random.uniform(k_a, (), minval=0.08, maxval=1.0) * h * w
  log_ratio = jax.random.uniform(k_r, (), minval=math.log(3 / 4), maxval=math.log(4 / 3))
  ratio = jnp.exp(log_ratio)
  cw = jnp.clip(jnp.sqrt(area * ratio), 1.0, w)
  ch = jnp.clip(jnp.sqrt(area / ratio), 1.0, h)
  y0 = jax.random.uniform(k_y, ()) * (h - ch)
  x0 = jax.random.uniform(k_x, ()) * (w - cw)
  scale = jnp.stack([h / ch, w / cw])
  out = jax.image.scale_and_translate(
      image.astype(jnp.float32), (h, w, c), (0, 1), scale,
      jnp.stack([-y0 * scale[0], -x0 * scale[1]]), method='linear', antialias=True)
  out = jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)
  return jnp.where(jax.random.bernoulli(k_f), out[:, ::-1], out)


def augment_batch(images: jax.Array, keys: jax.Array, kind: str) -> jax.Array:
  """Applies augmentation `kind` ('cifar', 'imagenet', 'none') to uint8 [B,H,W,C]."""
  if kind == 'none':
    return images
  fn = {'cifar': cifar_augment, 'imagenet': imagenet_augment}[kind]
  return jax.vmap(fn)(images, keys)


def normalise(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """(x - mean) / std in float32; mean/std per channel in 0..255 units."""
  return (images.astype(jnp.float32) - mean) / std
