"""Input pipelines: data set sources, a tf.data backend and a device-resident backend.

`create_pipeline` picks `config.data.backend`:

* 'device' (`eeprune_jax.data.device`): the whole split lives on every device as uint8,
  augmentation runs in JAX, only int32 index batches cross host->device. No TensorFlow
  needed for the 'digits' and 'npz' sources. The fast path for CIFAR-scale data.
* 'tfdata' (`eeprune_jax.data.tfdata`): a tf.data pipeline on the host; each process
  reads its own contiguous part of the split. For data that does not fit on device.
* 'grain' (`eeprune_jax.data.grain_pipeline`): grain workers on the host read the kept
  examples at random (TFDS ArrayRecord via `tfds.data_source`), in the device backend's
  global order, split over processes; uint8 feeds normalised on device.

THE INVARIANT: every training example has a stable index 0..N-1, its position in the
canonical order of its split (see `sources`); keep masks (bool [N]), per-example scores
and the `index` field of every batch agree on it on every host and device.

The data is read one way only: through *feeds*, by the loop's jitted programs
(`loop.Programs`: the train steps, `evaluate`, every per-example pass). A feed is a pytree
of global arrays that one program takes. The pipeline's `reader` (a `FeedReader`: a small
value holding no data) gives a feed's PartitionSpecs (`feed_specs()`) and, inside
`shard_map`, `local_batch(feed, step, epoch, train)` turns it into this device's rows of
batch `step` of the global batch: `image` float32 [b,H,W,C] ((x - mean) / std),
`label` int32 [b], `index` int32 [b], `valid` bool [b]. Training batches are all valid.
An eval pass (`eval_feeds`) visits every index exactly once; its last batch is padded with
rows that have valid=False, index=-1, label=0 and an all-zero image. The device backend's
feed is the whole split plus the epoch's index order (uploaded once per epoch), so a
program runs many steps per dispatch; the tf.data and grain backends' feed is one host
batch (uint8 images, normalised on device), so their programs run one step.
"""

import dataclasses
import importlib
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from eeprune_jax import parallel

from eeprune_jax.data import augment
from eeprune_jax.data import sources
from eeprune_jax.data.sources import DatasetInfo, DatasetNotPreparedError, dataset_info

PAD_INDEX = -1  # `index` of padded eval rows (valid=False).


class FeedReader:
  """How the loop's programs read one backend's feeds (see the module docstring).

  A frozen dataclass of what the reading depends on, never the data: programs are cached
  by it (`loop`), so runs with equal readers share one compiled program and no cached
  program keeps a finished run's data alive.
  """

  def feed_specs(self) -> Any:
    """PartitionSpec tree of a feed (train and eval feeds alike)."""
    raise NotImplementedError

  def local_batch(self, feed: Any, step: jax.Array, epoch: jax.Array, *, train: bool
                  ) -> dict[str, jax.Array]:
    """This device's rows of batch `step` of `feed` (traced; runs inside shard_map)."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class HostBatchReader(FeedReader):
  """Feeds that are one batch each: uint8 images sharded along the batch axis, normalised
  here with the data set's per-channel mean and std (0..255 units)."""
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def feed_specs(self) -> Any:
    """Every field sharded along the batch axis."""
    return jax.sharding.PartitionSpec(parallel.BATCH_AXIS)

  def local_batch(self, feed: Any, step: jax.Array, epoch: jax.Array, *, train: bool
                  ) -> dict[str, jax.Array]:
    """The feed is the batch, its images normalised (padding rows stay 0)."""
    del step, epoch, train
    image = augment.normalise(feed['image'], np.asarray(self.mean, np.float32),
                              np.asarray(self.std, np.float32))
    return {**feed, 'image': jnp.where(feed['valid'][:, None, None, None], image, 0.0)}


class Pipeline:
  """The interface both backends implement (see the module docstring)."""

  info: DatasetInfo
  train_labels: np.ndarray  # int32 [num_train], canonical order.
  reader: FeedReader  # how the loop's programs read this backend's feeds

  def __init__(self, data_config: Any, *, batch_size: int, eval_batch_size: int,
               mesh: Mesh, seed: int):
    self.data_config = data_config
    self.batch_size = batch_size
    self.eval_batch_size = eval_batch_size
    self.mesh = mesh
    self.seed = seed
    self.info = dataset_info(data_config)
    # config_checks validates the augmentation and the batch sizes against the devices.
    assert data_config.augment in augment.KINDS, data_config.augment
    assert all(bs > 0 and bs % jax.device_count() == 0 for bs in (batch_size, eval_batch_size)
               ), (batch_size, eval_batch_size, jax.device_count())

  def kept_indices(self, keep_mask: np.ndarray | None) -> np.ndarray:
    """Sorted kept indices (int64) after validating the mask; all indices for None."""
    n = self.info.num_train
    if keep_mask is None:
      return np.arange(n)
    keep_mask = np.asarray(keep_mask)
    if keep_mask.shape != (n,):
      length = keep_mask.shape[0] if keep_mask.ndim == 1 else keep_mask.shape
      raise ValueError(f'keep mask has length {length} but data set '
                       f'{self.info.name!r} (split {self.data_config.train_split!r}) has '
                       f'{n} training examples.')
    if keep_mask.dtype != np.bool_:
      raise ValueError(f'keep mask must be bool, got {keep_mask.dtype}.')
    return np.flatnonzero(keep_mask)

  def steps_per_epoch(self, keep_mask: np.ndarray | None) -> int:
    """num_kept // batch_size (drop remainder); ValueError if fewer kept than a batch."""
    kept = len(self.kept_indices(keep_mask))
    if kept < self.batch_size:
      raise ValueError(f'only {kept} training examples of {self.info.name!r} are kept, '
                       f'fewer than one batch of {self.batch_size}.')
    return kept // self.batch_size

  def num_eval_steps(self, split: str) -> int:
    """Number of (padded) batches of an eval pass over `split` (per process)."""
    raise NotImplementedError

  # --- Feeds: what the loop's jitted programs read (see the module docstring) ---------

  def train_feeds(self, epoch: int, keep_mask: np.ndarray | None, first_step: int,
                  steps_per_feed: int) -> Iterator[Any]:
    """One feed per dispatch for steps first_step.. of the epoch, up to `steps_per_feed`
    steps each (the tf.data backend serves one step per feed whatever is asked)."""
    raise NotImplementedError

  def max_steps_per_feed(self) -> int:
    """How many train steps one feed can serve (the device backend: a whole epoch)."""
    raise NotImplementedError

  def eval_feeds(self, split: str) -> Iterator[tuple[Any, int]]:
    """(feed, number of batches in it) covering split 'train' or 'eval' once: un-augmented
    batches, every index once, the last padded."""
    raise NotImplementedError

  def close(self) -> None:
    """Ends what the backend reads with in the background (threads, worker processes)."""

  def _num_split(self, split: str) -> int:
    if split == 'train':
      return self.info.num_train
    if split == 'eval':
      return self.info.num_eval
    raise ValueError(f"split must be 'train' or 'eval', not {split!r}.")


class HostBatchPipeline(Pipeline):
  """A backend whose every feed is one global batch read on the host (tf.data, grain):
  uint8 images sharded along the batch axis, normalised on the device."""

  def __init__(self, data_config: Any, **kwargs: Any):
    super().__init__(data_config, **kwargs)
    # The float32 values the device computes with, as exact Python floats.
    self.reader = HostBatchReader(*(tuple(np.asarray(v, np.float32).tolist())
                                    for v in (self.info.mean, self.info.std)))


# backend name -> (module, class); imported on use, so the device backend never pulls in
# TensorFlow and the tf.data one never pulls in grain. A new backend is a new module here.
BACKENDS = {
    'device': ('eeprune_jax.data.device', 'DevicePipeline'),
    'tfdata': ('eeprune_jax.data.tfdata', 'TfDataPipeline'),
    'grain': ('eeprune_jax.data.grain_pipeline', 'GrainPipeline'),
}
# Backends that keep what they read once (the training labels) in the run's workdir.
_TAKES_WORKDIR = ('tfdata',)


def create_pipeline(data_config: Any, *, batch_size: int, eval_batch_size: int,
                    mesh: Mesh, seed: int, workdir: Any = None) -> Pipeline:
  """The input pipeline of `config.data.backend` (a key of BACKENDS); `workdir` (a run's)
  keeps what a host backend reads once, such as the training labels."""
  kwargs = dict(batch_size=batch_size, eval_batch_size=eval_batch_size, mesh=mesh, seed=seed)
  backend = data_config.backend
  module, cls = BACKENDS[backend]  # config_checks validates config.data.backend
  if backend in _TAKES_WORKDIR:
    kwargs['workdir'] = workdir
  return getattr(importlib.import_module(module), cls)(data_config, **kwargs)


__all__ = ['DatasetInfo', 'DatasetNotPreparedError', 'PAD_INDEX', 'Pipeline',
           'create_pipeline', 'dataset_info', 'sources']
