"""Device-resident input pipeline: whole splits on device, augmentation in JAX.

Each process loads the full split (`sources.load_arrays`) and puts it, as uint8,
replicated on every device of the mesh. Per epoch only the int32 [steps, B] index order
crosses host->device; inside the loop's jitted programs each device gathers its own rows
of a step from its replica (no communication), augments and normalises them
(`DeviceReader.local_batch`). A train feed serves any number of steps of its epoch, so
one dispatch can run many steps; an eval feed is the whole split.

Training order: `order.train_order`, a permutation of the kept indices from (seed, epoch)
cut into steps_per_epoch batches (the remainder is dropped); every process computes the
same permutation (the grain backend serves the same order). Augmentation randomness of
an example is `fold_in(fold_in(key(seed), epoch), index)`. Both depend only on (seed,
epoch, keep mask), so a resumed run sees the same batches. TensorFlow is never imported
here (it is only used when the source is 'tfds').
"""

import dataclasses
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from eeprune_jax import parallel
from eeprune_jax.data import PAD_INDEX, FeedReader, Pipeline, sources
from eeprune_jax.data import augment as augment_lib
from eeprune_jax.data import order as order_lib
from eeprune_jax.data.sources import ceil_div

P = jax.sharding.PartitionSpec
_TABLE_SPECS = {'images': P(), 'labels': P(), 'mean': P(), 'std': P(), 'key': P()}
_FEED_SPECS = {'tables': _TABLE_SPECS, 'order': P(None, parallel.BATCH_AXIS)}


def _batch_from_indices(tables: dict[str, jax.Array], idx: jax.Array, epoch: jax.Array, *,
                        kind: str, train: bool) -> dict[str, jax.Array]:
  """Gather + augment + normalise of the rows `idx` (-1 = padding) of a replicated split."""
  valid = idx >= 0
  safe = jnp.where(valid, idx, 0)
  x = jnp.take(tables['images'], safe, axis=0)
  if train:
    epoch_key = jax.random.fold_in(jax.random.wrap_key_data(tables['key']), epoch)
    keys = jax.vmap(lambda i: jax.random.fold_in(epoch_key, i))(safe)
    x = augment_lib.augment_batch(x, keys, kind)
  x = augment_lib.normalise(x, tables['mean'], tables['std'])
  x = jnp.where(valid[:, None, None, None], x, 0.0)
  return {'image': x,
          'label': jnp.where(valid, jnp.take(tables['labels'], safe), 0).astype(jnp.int32),
          'index': idx.astype(jnp.int32),
          'valid': valid}


@dataclasses.dataclass(frozen=True)
class DeviceReader(FeedReader):
  """Feeds of a replicated split and an index order: gather, augment (`augment`, a kind of
  `augment.KINDS`) and normalise on device."""
  augment: str

  def feed_specs(self) -> Any:
    """Replicated tables, order sharded along the batch axis."""
    return _FEED_SPECS

  def local_batch(self, feed: Any, step: jax.Array, epoch: jax.Array, *, train: bool
                  ) -> dict[str, jax.Array]:
    """Gathers this device's rows of step `step` from its replica of the split."""
    return _batch_from_indices(feed['tables'], feed['order'][step], epoch,
                               kind=self.augment, train=train)


def device_memory_bytes() -> int:
  """Memory of one local device: its allocator's limit, or on CPUs (no such limit) the
  host's physical memory shared by the local devices."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // jax.local_device_count()


def check_fits(info: sources.DatasetInfo, share: float, capacity: int) -> None:
  """Refuses data whose uint8 train + eval images exceed `share` of a device's `capacity`
  bytes (each device holds both splits whole); names the host backends as the way out."""
  size = (info.num_train + info.num_eval) * int(np.prod(info.image_shape))
  if size > share * capacity:
    gb = lambda b: f'{b / 2**30:.3g} GiB' if b >= 2**30 else f'{b / 2**20:.3g} MiB'
    raise ValueError(
        f'data set {info.name!r} does not fit the device backend: it holds the train and eval '
        f'splits on every device as uint8 ({info.num_train} + {info.num_eval} images of '
        f'{"x".join(map(str, info.image_shape))} = {gb(size)}), more than '
        f'config.data.device_memory_share={share} of one device\'s {gb(capacity)}. Stream it '
        "from the host instead: --config.data.backend=tfdata or --config.data.backend=grain "
        '(or lower data.image_size, or raise data.device_memory_share).')


class DevicePipeline(Pipeline):
  """Whole splits on device as uint8; see the module docstring."""

  def __init__(self, data_config: Any, *, batch_size: int, eval_batch_size: int,
               mesh: Mesh, seed: int):
    super().__init__(data_config, batch_size=batch_size, eval_batch_size=eval_batch_size,
                     mesh=mesh, seed=seed)
    self.reader = DeviceReader(data_config.augment)
    self._tables: dict[str, dict[str, jax.Array]] = {}
    self._eval_orders: dict[str, jax.Array] = {}
    # Raw key data: typed key arrays cannot be built from host buffers on every process.
    self._key_data = np.asarray(jax.random.key_data(jax.random.key(seed)))
    # Before decoding anything: an ImageNet-size split would fail only after hours.
    check_fits(self.info, data_config.device_memory_share, device_memory_bytes())
    images, labels = self._load('train')
    self.train_labels = labels
    self._put_tables('train', images, labels)

  def _load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = sources.load_arrays(self.data_config, split)
    expected = (self._num_split(split),) + self.info.image_shape
    if images.shape != expected:
      raise ValueError(f'{self.info.name!r} split {split!r}: loaded images {images.shape}, '
                       f'metadata says {expected}.')
    return images, labels.astype(np.int32)

  def _put_tables(self, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    self._tables[split] = parallel.replicate(self.mesh, {
        'images': images, 'labels': labels,
        'mean': np.asarray(self.info.mean, np.float32),
        'std': np.asarray(self.info.std, np.float32),
        'key': self._key_data})

  def _split_tables(self, split: str) -> dict[str, jax.Array]:
    if split not in self._tables:
      self._put_tables(split, *self._load(split))
    return self._tables[split]

  def _train_order(self, epoch: int, keep_mask: np.ndarray | None) -> np.ndarray:
    """[steps_per_epoch(keep_mask), B] kept indices in this epoch's order."""
    self.steps_per_epoch(keep_mask)  # raises if fewer are kept than a batch
    return order_lib.train_order(self.seed, epoch, self.kept_indices(keep_mask),
                                 self.batch_size)

  def _eval_order(self, split: str) -> np.ndarray:
    """[num_eval_steps, eval batch] indices 0..N-1 in order, padded with PAD_INDEX."""
    n, steps, b = self._num_split(split), self.num_eval_steps(split), self.eval_batch_size
    idx = np.full((steps * b,), PAD_INDEX, np.int32)
    idx[:n] = np.arange(n)
    return idx.reshape(steps, b)

  def _put_order(self, order: np.ndarray) -> jax.Array:
    sharding = jax.sharding.NamedSharding(self.mesh, _FEED_SPECS['order'])
    return parallel.put(np.ascontiguousarray(order, np.int32), sharding)

  def num_eval_steps(self, split: str) -> int:
    """ceil(N / eval_batch_size)."""
    return ceil_div(self._num_split(split), self.eval_batch_size)

  # --- Feeds ---------------------------------------------------------------------------

  def max_steps_per_feed(self) -> int:
    """A train feed serves every step of its epoch."""
    return self.steps_per_epoch(None)

  def train_feeds(self, epoch: int, keep_mask: np.ndarray | None, first_step: int,
                  steps_per_feed: int) -> Iterator[Any]:
    """The epoch's feed (split + order, uploaded once), once per dispatch."""
    order = self._train_order(epoch, keep_mask)
    # Padded to the full-data step count: one array shape (one compiled program) for
    # every epoch of a run, however many examples are kept.
    padded = np.full((self.steps_per_epoch(None), self.batch_size), PAD_INDEX, np.int32)
    padded[:len(order)] = order
    feed = {'tables': self._tables['train'], 'order': self._put_order(padded)}
    for _ in range(ceil_div(len(order) - first_step, steps_per_feed)):
      yield feed

  def eval_feeds(self, split: str) -> Iterator[tuple[Any, int]]:
    """The whole split as one feed (its index order is uploaded once and cached)."""
    if split not in self._eval_orders:
      self._eval_orders[split] = self._put_order(self._eval_order(split))
    order = self._eval_orders[split]
    yield {'tables': self._split_tables(split), 'order': order}, order.shape[0]

