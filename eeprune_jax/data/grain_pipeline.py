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

ONE STREAM PER MASK: the (epoch, index) sequence is lazy and spans all later epochs
(`TrainIndices`), so one grain pipeline, its workers and its prefetch thread serve epoch
after epoch (the next epoch's first batches load while the run evaluates); a new mask
(a pruning round) or a position other than where the stream stands starts a new one.

THE ITERATOR STATE is (epoch, step in epoch): the order is a function of (seed, epoch,
mask), so the run state every checkpoint carries (`run_state.RunState.epoch`,
`step_in_epoch`) is the whole state. `train_feeds(epoch, mask, first_step)` on a fresh
pipeline starts the element sequence at first_step's rows: a resume reads, decodes and
augments nothing it skips.

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
import numpy as np
from jax.sharding import Mesh

from eeprune_jax import parallel
from eeprune_jax.data import PAD_INDEX, HostBatchPipeline
from eeprune_jax.data import host_augment
from eeprune_jax.data import order as order_lib
from eeprune_jax.data import random_access
from eeprune_jax.data import sources
from eeprune_jax.data.sources import ceil_div

DEVICE_PREFETCH = 2  # global batches on the device ahead of the train program
READ_THREADS = 8  # grain reader threads per process (decoders release the GIL)
STREAM_EPOCHS = 100_000  # epochs a stream could serve: it is lazy, so only a bound


def num_workers(data_config: Any) -> int:
  """Worker processes: `data.grain_workers`, -1 = one per CPU core this process may use."""
  if data_config.grain_workers >= 0:
    return data_config.grain_workers
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


class TrainIndices:
  """Element k of a stream of epochs: (epoch, index), this process's rows of the order.

  Epoch `first_epoch + k // per_epoch`, position `k % per_epoch` of the process's columns
  of `order.train_order` flattened. Lazy (an epoch's order is computed on first use, in
  whichever process reads it), so one grain pipeline serves every epoch of a mask.
  """

  def __init__(self, seed: int, kept: np.ndarray, batch_size: int, first_epoch: int,
               num_epochs: int = STREAM_EPOCHS):
    self.seed, self.kept, self.batch_size = seed, kept, batch_size
    self.first_epoch, self.num_epochs = first_epoch, num_epochs
    self.pid, self.nproc = jax.process_index(), jax.process_count()
    self.per_epoch = (len(kept) // batch_size) * (batch_size // self.nproc)
    self._cached: tuple[int, np.ndarray] | None = None

  def __len__(self) -> int:
    return self.per_epoch * self.num_epochs

  def __getitem__(self, k: int) -> tuple[int, int]:
    epoch = self.first_epoch + k // self.per_epoch
    cached = self._cached  # one read: reader threads may replace it meanwhile
    if cached is None or cached[0] != epoch:
      order = order_lib.train_order(self.seed, epoch, self.kept, self.batch_size)
      cached = (epoch, order_lib.process_columns(order, self.pid, self.nproc).reshape(-1))
      self._cached = cached
    return epoch, int(cached[1][k % self.per_epoch])


class EvalIndices:
  """Element k: (-1, index) of pass k // len(indices) over the same local eval indices
  (epoch -1: eval reads are logged apart from every training epoch's)."""

  def __init__(self, indices: np.ndarray):
    self.indices = indices

  def __len__(self) -> int:
    return len(self.indices) * STREAM_EPOCHS

  def __getitem__(self, k: int) -> tuple[int, int]:
    return -1, int(self.indices[k % len(self.indices)])


class ReadExample(grain.transforms.Map):
  """(epoch, index) -> {'image' uint8 [S,S,C], 'label', 'index', 'valid'} (grain workers)."""

  def __init__(self, source: random_access.RecordSource, *, kind: str, size: int,
               shape: tuple[int, int, int], seed: int, train: bool):
    self.source, self.kind, self.size, self.shape = source, kind, size, shape
    self.seed, self.train = seed, train

  def map(self, element: tuple[int, int]) -> dict[str, np.ndarray]:
    epoch, index = element
    if index == PAD_INDEX:  # eval padding: nothing to read
      return {'image': np.zeros(self.shape, np.uint8), 'label': np.int32(0),
              'index': np.int32(PAD_INDEX), 'valid': np.False_}
    image, label = self.source.read(index, tag=epoch)
    if self.source.stored:
      image = host_augment.decode(image, self.shape[-1])
    if self.train:
      rng = np.random.default_rng((self.seed, epoch, index))
      image = host_augment.train_view(image, self.kind, self.size, rng)
    else:
      image = host_augment.eval_view(image, self.kind, self.size, stored=self.source.stored)
    return {'image': image, 'label': np.int32(label), 'index': np.int32(index),
            'valid': np.True_}


class Stream:
  """A grain iterator over many epochs, with a thread that keeps DEVICE_PREFETCH global
  batches on the device ahead of the consumer (also across epoch ends: the next epoch's
  first batches are ready while the run evaluates)."""

  def __init__(self, dataset: Any, mesh: Mesh, key: Any, position: tuple[int, int],
               steps_per_epoch: int, *, cyclic: bool = False):
    # position: (epoch, step) of the next batch; a cyclic stream (eval passes) stays at
    # epoch 0.
    self.key, self.position, self.steps_per_epoch = key, position, steps_per_epoch
    self._cyclic = cyclic
    self._iterator = iter(dataset)
    self._slots: queue.Queue = queue.Queue(maxsize=DEVICE_PREFETCH)
    self._stop = threading.Event()
    self._mesh = mesh
    self._thread = threading.Thread(target=self._produce, daemon=True,
                                    name='grain-device-prefetch')
    self._thread.start()

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._slots.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _produce(self) -> None:
    try:
      for batch in self._iterator:
        if not self._put(parallel.host_to_global(self._mesh, batch)):
          return
      self._put(StopIteration())
    except BaseException as e:  # pylint: disable=broad-except
      self._put(e)  # re-raised in the consumer: a failed read ends the run with its reason

  def take(self, n: int) -> Iterator[dict[str, jax.Array]]:
    """The next n global batches (the stream's position advances with each)."""
    for _ in range(n):
      item = self._slots.get()
      if isinstance(item, BaseException):
        self.close()
        raise item
      epoch, step = self.position
      step += 1
      epoch += 0 if self._cyclic else step // self.steps_per_epoch
      self.position = (epoch, step % self.steps_per_epoch)
      yield item

  def close(self) -> None:
    """Stops the thread and grain's worker processes."""
    self._stop.set()
    self._thread.join(timeout=60)
    close = getattr(self._iterator, 'close', None)
    if close is not None:
      close()  # ends mp_prefetch's worker processes now, not at garbage collection


class GrainPipeline(HostBatchPipeline):
  """grain on the host, random access, global order; see the module docstring."""

  def __init__(self, data_config: Any, *, batch_size: int, eval_batch_size: int,
               mesh: Mesh, seed: int):
    super().__init__(data_config, batch_size=batch_size, eval_batch_size=eval_batch_size,
                     mesh=mesh, seed=seed)
    self._pid, self._nproc = jax.process_index(), jax.process_count()
    self._sources: dict[str, random_access.RecordSource] = {}
    self._streams: dict[str, Stream] = {}
    self._train_labels: np.ndarray | None = None
    self.num_workers = num_workers(data_config)
    # Epochs a train stream may serve (and read ahead into); 1 measures one epoch's reads.
    self.stream_epochs = STREAM_EPOCHS
    # Opening a source reads metadata only: the train split is opened now so that a
    # misconfigured data set fails before any compute.
    self.source('train')

  def source(self, split: str) -> random_access.RecordSource:
    """The record source of split 'train' or 'eval' (opened once)."""
    if split not in self._sources:
      self._sources[split] = sources.open_records(self.data_config, split)
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

  def close(self) -> None:
    """Ends every stream's thread and worker processes."""
    for stream in self._streams.values():
      stream.close()
    self._streams.clear()

  # --- Streams ------------------------------------------------------------------------

  def _dataset(self, split: str, elements: Any, local_batch: int, *, train: bool) -> Any:
    """A grain IterDataset of this process's batches of `elements` ((epoch, index) pairs)."""
    transform = ReadExample(
        self.source(split), kind=self.data_config.augment, size=self.data_config.image_size,
        shape=self.info.image_shape, seed=self.seed, train=train)
    ds = elements.map(transform).batch(local_batch, drop_remainder=True)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS,
                                              prefetch_buffer_size=local_batch))
    if self.num_workers > 0:
      # grain's worker pool reads absl flags; outside an absl app (tests, notebooks,
      # benchmarks) they are unparsed: take their defaults.
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers,
                                                       per_worker_buffer_size=1))
    return ds

  def _stream(self, name: str, key: Any, position: tuple[int, int], steps: int,
              build: Any, cyclic: bool = False) -> Stream:
    """The live stream `name` if it is at `position` of the same `key`, else a new one."""
    stream = self._streams.get(name)
    if stream is not None and stream.position == position and _same(stream.key, key):
      return stream
    if stream is not None:
      stream.close()
    self._streams[name] = Stream(build(), self.mesh, key, position, steps, cyclic=cyclic)
    return self._streams[name]

  def _local_eval_indices(self, split: str) -> np.ndarray:
    n, steps, b = self._num_split(split), self.num_eval_steps(split), self.eval_batch_size
    idx = np.full((steps * b,), PAD_INDEX, np.int64)
    idx[:n] = np.arange(n)
    return order_lib.process_columns(idx.reshape(steps, b), self._pid, self._nproc)

  def num_eval_steps(self, split: str) -> int:
    """ceil(N / eval_batch_size)."""
    return ceil_div(self._num_split(split), self.eval_batch_size)

  # --- Feeds: one global uint8 batch each -------------------------------------------------

  def max_steps_per_feed(self) -> int:
    """Batches stream from the host: one step per feed."""
    return 1

  def train_feeds(self, epoch: int, keep_mask: np.ndarray | None, first_step: int,
                  steps_per_feed: int) -> Iterator[Any]:
    """The epoch's global batches from `first_step` on (nothing before it is read).

    One stream per mask: it continues into the next epoch where the last call stopped,
    and starts afresh (reading from `first_step`) after a resume or a new mask.
    """
    del steps_per_feed  # always one
    steps = self.steps_per_epoch(keep_mask)
    kept = self.kept_indices(keep_mask)
    local = self.batch_size // self._nproc

    def build() -> Any:
      elements = grain.MapDataset.source(
          TrainIndices(self.seed, kept, self.batch_size, epoch, self.stream_epochs))
      return self._dataset('train', elements[first_step * local:], local, train=True)
    stream = self._stream('train', kept, (epoch, first_step), steps, build)
    return stream.take(steps - first_step)

  def eval_feeds(self, split: str) -> Iterator[tuple[Any, int]]:
    """Every eval batch of the split, one per feed (one stream per split, pass after pass)."""
    indices = self._local_eval_indices(split)
    steps = len(indices)

    def build() -> Any:
      elements = grain.MapDataset.source(EvalIndices(indices.reshape(-1)))
      return self._dataset(split, elements, indices.shape[1], train=False)
    stream = self._stream(f'eval_{split}', split, (0, 0), steps, build, cyclic=True)
    return ((batch, 1) for batch in stream.take(steps))


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
  return a == b
