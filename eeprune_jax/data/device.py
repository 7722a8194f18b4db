"""Device-resident input pipeline: whole splits on device, augmentation in JAX.

Each process loads the full split (`sources.load_arrays`) and puts it, as uint8,
replicated on every device of the mesh. Per step only an int32 [B] index batch crosses
host->device; a jitted gather + augment + normalise turns it into the batch dict,
sharded P('batch') (each device gathers its own rows from its replica, no communication).

Training order: `np.random.default_rng((seed, epoch)).permutation(kept indices)`, cut
into steps_per_epoch batches (the remainder is dropped); every process computes the same
permutation. Augmentation randomness of an example is `fold_in(fold_in(key(seed), epoch),
index)`. Both depend only on (seed, epoch, keep mask), so a resumed run sees the same
batches. TensorFlow is never imported here (it is only used when the source is 'tfds').
"""

import functools
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding

from eeprune_jax import parallel
from eeprune_jax.data import PAD_INDEX, Pipeline, sources
from eeprune_jax.data import augment as augment_lib
from eeprune_jax.data.sources import ceil_div


def _gather(table: jax.Array, idx: jax.Array, sharding: NamedSharding) -> jax.Array:
  # Replicated table, batch-sharded indices: each device gathers its own rows. Meshes
  # with Explicit axes (jax.make_mesh's default) need the output sharding spelled out;
  # Auto meshes reject that and take a sharding constraint instead.
  if all(t == AxisType.Explicit for t in sharding.mesh.axis_types):
    return table.at[idx].get(out_sharding=sharding)
  return jax.lax.with_sharding_constraint(jnp.take(table, idx, axis=0), sharding)


@functools.partial(jax.jit, static_argnames=('kind', 'train', 'sharding'))
def _make_batch(images: jax.Array, labels: jax.Array, idx: jax.Array, key: jax.Array,
                epoch: jax.Array, mean: jax.Array, std: jax.Array, *, kind: str,
                train: bool, sharding: NamedSharding) -> dict[str, jax.Array]:
  valid = idx >= 0
  safe = jnp.where(valid, idx, 0)
  x = _gather(images, safe, sharding)
  if train:
    epoch_key = jax.random.fold_in(jax.random.wrap_key_data(key), epoch)
    keys = jax.vmap(lambda i: jax.random.fold_in(epoch_key, i))(safe)
    x = augment_lib.augment_batch(x, keys, kind)
  x = augment_lib.normalise(x, mean, std)
  x = jnp.where(valid[:, None, None, None], x, 0.0)
  return {'image': x,
          'label': jnp.where(valid, _gather(labels, safe, sharding), 0).astype(jnp.int32),
          'index': idx,
          'valid': valid}


class DevicePipeline(Pipeline):
  """Whole splits on device as uint8; see the module docstring."""

  def __init__(self, data_config: Any, *, batch_size: int, eval_batch_size: int,
               mesh: Mesh, seed: int):
    super().__init__(data_config, batch_size=batch_size, eval_batch_size=eval_batch_size,
                     mesh=mesh, seed=seed)
    self._arrays: dict[str, tuple[jax.Array, jax.Array]] = {}
    images, labels = self._load('train')
    self.train_labels = labels
    self._arrays['train'] = (parallel.replicate(mesh, images), parallel.replicate(mesh, labels))
    self._mean = parallel.replicate(mesh, np.asarray(self.info.mean, np.float32))
    self._std = parallel.replicate(mesh, np.asarray(self.info.std, np.float32))
    # Raw key data: typed key arrays cannot be built from host buffers on every process.
    self._key = parallel.replicate(mesh, jax.random.key_data(jax.random.key(seed)))
    self._batch_sharding = parallel.batch_sharding(mesh)

  def _load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = sources.load_arrays(self.data_config, split)
    expected = (self._num_split(split),) + self.info.image_shape
    if images.shape != expected:
      raise ValueError(f'{self.info.name!r} split {split!r}: loaded images {images.shape}, '
                       f'metadata says {expected}.')
    return images, labels.astype(np.int32)

  def _device_arrays(self, split: str) -> tuple[jax.Array, jax.Array]:
    if split not in self._arrays:
      images, labels = self._load(split)
      self._arrays[split] = (parallel.replicate(self.mesh, images), parallel.replicate(self.mesh, labels))
    return self._arrays[split]

  def _index_batch(self, idx: np.ndarray) -> jax.Array:
    idx = np.ascontiguousarray(idx, np.int32)
    return jax.make_array_from_callback(idx.shape, self._batch_sharding,
                                        lambda i: idx[i])

  def train_epoch(self, epoch: int, keep_mask: np.ndarray | None
                  ) -> Iterator[dict[str, jax.Array]]:
    """Exactly steps_per_epoch(keep_mask) augmented global batches of kept examples."""
    steps = self.steps_per_epoch(keep_mask)
    kept = self.kept_indices(keep_mask)
    order = np.random.default_rng((self.seed, epoch)).permutation(kept)
    images, labels = self._arrays['train']
    epoch_arr = np.int32(epoch)
    return self._iterate(
        [order[s * self.batch_size:(s + 1) * self.batch_size] for s in range(steps)],
        images, labels, epoch_arr, train=True)

  def num_eval_steps(self, split: str) -> int:
    """ceil(N / eval_batch_size)."""
    return ceil_div(self._num_split(split), self.eval_batch_size)

  def eval_batches(self, split: str) -> Iterator[dict[str, jax.Array]]:
    """Un-augmented batches of split 'train' or 'eval', every index once, last padded."""
    n, steps, b = self._num_split(split), self.num_eval_steps(split), self.eval_batch_size
    idx = np.full((steps * b,), PAD_INDEX, np.int64)
    idx[:n] = np.arange(n)
    images, labels = self._device_arrays(split)
    return self._iterate([idx[s * b:(s + 1) * b] for s in range(steps)], images, labels,
                         np.int32(0), train=False)

  def _iterate(self, batches: list[np.ndarray], images: jax.Array, labels: jax.Array,
               epoch: np.int32, *, train: bool) -> Iterator[dict[str, jax.Array]]:
    kind = self.data_config.augment
    for idx in batches:
      yield _make_batch(images, labels, self._index_batch(idx), self._key, epoch,
                        self._mean, self._std, kind=kind, train=train,
                        sharding=self._batch_sharding)
