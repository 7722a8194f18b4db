"""grain input pipeline: random access to the kept examples only, global order, uint8 feeds.

For data that does not fit on device (ImageNet). Each epoch:

1. the order is `order.train_order(seed, epoch, kept indices, B)`, the device backend's:
   a permutation of the kept indices from (seed, epoch) cut into global batches;
2. process p takes its columns of every global batch (`order.process_columns`), the rows
   its devices hold, so across processes every kept example is trained exactly once per
   epoch (but for the num_kept % B dropped by the permutation's cut) and every global
   batch is the device backend's, whatever the number of hosts or how unevenly the mask
   prunes their parts of the split;
3. a grain `MapDataset` over those indices reads each record (`random_access`: only kept
   records are ever read, so I/O shrinks with the mask), decodes and augments it
   (`host_augment`, seeded by (seed, epoch, index)) and batches; `data.grain_workers`
   worker processes (0: reader threads in this process) run it;
4. batches cross to the device as uint8 (a quarter of float32's bytes), a thread keeps
   DEVICE_PREFETCH of them on the device ahead of the loop, and `local_batch` normalises
   them there, inside the train program.

THE ITERATOR STATE is (epoch, step in epoch): the order is a function of (seed, epoch,
mask), so the run state every checkpoint carries (`run_state.RunState.epoch`,
`step_in_epoch`) is the whole state. `train_feeds(epoch, mask, first_step)` starts the
index list at first_step's rows: a resume reads, decodes and augments nothing it skips.

Eval/scoring: the device backend's order (0..N-1, the last batch padded with index -1),
each process its columns; padded rows are not read (zero image, valid=False).
Feeds are one global batch each (`max_steps_per_feed` = 1), uint8 images.
"""

import os
import queue
import threading
from typing import Any, Iterator

from absl import flags
import grain
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from eeprune_jax import parallel
from eeprune_jax.data import PAD_INDEX, Pipeline
from eeprune_jax.data import host_augment
from eeprune_jax.data import order as order_lib
from eeprune_jax.data import random_access
from eeprune_jax.data.sources import ceil_div

DEVICE_PREFETCH = 2  # global batches on the device ahead of the train program
READ_THREADS = 8  # grain reader threads per process (decoders release the GIL)


def num_workers(data_config: Any) -> int:
  """Worker processes: `data.grain_workers`, -1 = one per CPU core this process may use."""
  if data_config.grain_workers >= 0:
    return data_config.grain_workers
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


class ReadExample(grain.transforms.Map):
  """index -> {'image' uint8 [S,S,C], 'label', 'index', 'valid'} (runs in grain workers)."""

  def __init__(self, source: random_access.RecordSource, *, kind: str, size: int,
               shape: tuple[int, int, int], seed: int, epoch: int, train: bool):
    self.source, self.kind, self.size, self.shape = source, kind, size, shape
    self.seed, self.epoch, self.train = seed, epoch, train

  def map(self, element: Any) -> dict[str, np.ndarray]:
    index = int(element)
    if index == PAD_INDEX:  # eval padding: nothing to read
      return {'image': np.zeros(self.shape, np.uint8), 'label': np.int32(0),
              'index': np.int32(PAD_INDEX), 'valid': np.False_}
    image, label = self.source.read(index)
    if self.source.stored:
      image = host_augment.decode(image, self.shape[-1])
    if self.train:
      rng = np.random.default_rng((self.seed, self.epoch, index))
      image = host_augment.train_view(image, self.kind, self.size, rng)
    else:
      image = host_augment.eval_view(image, self.kind, self.size, stored=self.source.stored)
    return {'image': image, 'label': np.int32(label), 'index': np.int32(index),
            'valid': np.True_}


class GrainPipeline(Pipeline):
  """grain on the host, random access, global order; see the module docstring."""

  def __init__(self, data_config: Any, *, batch_size: int, eval_batch_size: int,
               mesh: Mesh, seed: int):
    super().__init__(data_config, batch_size=batch_size, eval_batch_size=eval_batch_size,
                     mesh=mesh, seed=seed)
    self._pid, self._nproc = jax.process_index(), jax.process_count()
    self._sources: dict[str, random_access.RecordSource] = {}
    self._train_labels: np.ndarray | None = None
    self.num_workers = num_workers(data_config)
    # Opening a source reads metadata only: the train split is opened now so that a
    # misconfigured data set fails before any compute.
    self.source('train')
    mean = np.asarray(self.info.mean, np.float32)
    std = np.asarray(self.info.std, np.float32)
    self._normalise = lambda x: (x.astype(jnp.float32) - mean) / std
    spec = jax.sharding.PartitionSpec(parallel.BATCH_AXIS)
    self._global_normalise = parallel.data_parallel(
        lambda feed: self.local_batch(feed, 0, 0, train=False), mesh, in_specs=(spec,),
        out_specs=spec)

  def source(self, split: str) -> random_access.RecordSource:
    """The record source of split 'train' or 'eval' (opened once)."""
    if split not in self._sources:
      self._sources[split] = random_access.open_split(self.data_config, split)
      expected = self._num_split(split)
      if len(self._sources[split]) != expected:
        raise ValueError(f'{self.info.name!r} split {split!r}: the random-access source '
                         f'has {len(self._sources[split])} records, metadata says '
                         f'{expected}.')
    return self._sources[split]

  @property
  def train_labels(self) -> np.ndarray:  # pytype: disable=signature-mismatch
    """int32 [num_train] labels in canonical order (read once, on first use)."""
    if self._train_labels is None:
      self._train_labels = self.source('train').labels()
    return self._train_labels

  # --- Orders ------------------------------------------------------------------------

  def local_train_indices(self, epoch: int, keep_mask: np.ndarray | None,
                          first_step: int = 0) -> np.ndarray:
    """[steps - first_step, local B] the indices this process reads for the epoch."""
    self.steps_per_epoch(keep_mask)  # raises if fewer are kept than a batch
    order = order_lib.train_order(self.seed, epoch, self.kept_indices(keep_mask),
                                  self.batch_size)
    return order_lib.process_columns(order, self._pid, self._nproc)[first_step:]

  def _local_eval_indices(self, split: str) -> np.ndarray:
    n, steps, b = self._num_split(split), self.num_eval_steps(split), self.eval_batch_size
    idx = np.full((steps * b,), PAD_INDEX, np.int64)
    idx[:n] = np.arange(n)
    return order_lib.process_columns(idx.reshape(steps, b), self._pid, self._nproc)

  # --- Host batches ------------------------------------------------------------------

  def host_batches(self, split: str, indices: np.ndarray, *, epoch: int, train: bool
                   ) -> Any:
    """A grain IterDataset of this process's batches (rows of `indices` [steps, b])."""
    steps, b = indices.shape
    transform = ReadExample(
        self.source(split), kind=self.data_config.augment, size=self.data_config.image_size,
        shape=self.info.image_shape, seed=self.seed, epoch=epoch, train=train)
    ds = grain.MapDataset.source(indices.reshape(-1)).map(transform)
    ds = ds.batch(b, drop_remainder=True)
    assert len(ds) == steps, (len(ds), steps)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS,
                                              prefetch_buffer_size=2 * b))
    if self.num_workers > 0:
      # grain's worker pool reads absl flags; outside an absl app (tests, notebooks,
      # benchmarks) they are unparsed: take their defaults.
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers,
                                                       per_worker_buffer_size=2))
    return ds

  def _to_device(self, dataset: Any) -> Iterator[dict[str, jax.Array]]:
    """Global uint8 batches, DEVICE_PREFETCH of them uploaded ahead by a thread."""
    iterator = iter(dataset)
    slots: queue.Queue = queue.Queue(maxsize=DEVICE_PREFETCH)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
      while not stop.is_set():
        try:
          slots.put(item, timeout=0.1)
          return True
        except queue.Full:
          continue
      return False

    def produce() -> None:
      try:
        for batch in iterator:
          if not put(parallel.host_to_global(self.mesh, batch)):
            return
        put(end)
      except BaseException as e:  # pylint: disable=broad-except
        put(e)  # re-raised in the consumer: a failed read ends the run with its reason

    thread = threading.Thread(target=produce, daemon=True, name='grain-device-prefetch')
    thread.start()
    try:
      while True:
        item = slots.get()
        if item is end:
          return
        if isinstance(item, BaseException):
          raise item
        yield item
    finally:
      stop.set()
      thread.join(timeout=60)
      close = getattr(iterator, 'close', None)
      if close is not None:
        close()  # ends mp_prefetch's worker processes now, not at garbage collection

  # --- Global batches, one at a time (tests, benchmarks) --------------------------------

  def train_epoch(self, epoch: int, keep_mask: np.ndarray | None
                  ) -> Iterator[dict[str, jax.Array]]:
    """Exactly steps_per_epoch(keep_mask) augmented global batches of kept examples."""
    for feed in self.train_feeds(epoch, keep_mask, 0, 1):
      yield self._global_normalise(feed)

  def num_eval_steps(self, split: str) -> int:
    """ceil(N / eval_batch_size)."""
    return ceil_div(self._num_split(split), self.eval_batch_size)

  def eval_batches(self, split: str) -> Iterator[dict[str, jax.Array]]:
    """Un-augmented batches of split 'train' or 'eval', every index once, last padded."""
    for feed, _ in self.eval_feeds(split):
      yield self._global_normalise(feed)

  # --- Feeds: one global uint8 batch each -------------------------------------------------

  def max_steps_per_feed(self) -> int:
    """Batches stream from the host: one step per feed."""
    return 1

  def train_feeds(self, epoch: int, keep_mask: np.ndarray | None, first_step: int,
                  steps_per_feed: int) -> Iterator[Any]:
    """The epoch's global batches from `first_step` on (nothing before it is read)."""
    del steps_per_feed  # always one
    indices = self.local_train_indices(epoch, keep_mask, first_step)
    if not len(indices):
      return iter(())
    return self._to_device(self.host_batches('train', indices, epoch=epoch, train=True))

  def eval_feeds(self, split: str) -> Iterator[tuple[Any, int]]:
    """Every eval batch of the split, one per feed."""
    indices = self._local_eval_indices(split)
    dataset = self.host_batches(split, indices, epoch=0, train=False)
    return ((batch, 1) for batch in self._to_device(dataset))

  def train_feed_specs(self) -> Any:
    """Every field sharded along the batch axis."""
    return jax.sharding.PartitionSpec(parallel.BATCH_AXIS)

  eval_feed_specs = train_feed_specs

  def local_batch(self, feed: Any, step: jax.Array, epoch: jax.Array, *, train: bool
                  ) -> dict[str, jax.Array]:
    """The feed is the batch; its uint8 images are normalised here, on the device."""
    del step, epoch, train
    valid = feed['valid']
    image = jnp.where(valid[:, None, None, None], self._normalise(feed['image']), 0.0)
    return {**feed, 'image': image}
