"""tf.data input pipeline on the host (for data that does not fit on device).

Each process reads its own contiguous part [start, end) of the split
(`sources.process_range`): TFDS records through `sources.stream` (TFRecord shard files read
16 at once in parallel, interleaved, each record indexed by its file and position there),
in-memory arrays enumerated from start. Every record carries its canonical index (see
`sources`); the keep mask is global.

Training, one tf.data pipeline per keep mask serving its epochs back to back (a new one
after a new mask, a resume, or an epoch stopped part-way), per epoch: indexed records (the
shard files in an order drawn from (seed, epoch)) -> filter by the keep mask (a bool table
gathered by index) -> shuffle (`shuffle_buffer`: SHUFFLE_BUFFER_BYTES of records, so the
first batch waits for a bounded read whatever N; seed from (seed, epoch)) -> repeat (a
host short of kept examples only) -> skip (a resume: the records of the batches already
trained, before decoding) -> decode -> augment -> batch(local batch, drop_remainder) ->
take(the rest of steps_per_epoch) -> prefetch.
Feeds are uploaded one batch ahead (DEVICE_PREFETCH) of the step that runs.
Images cross host->device as uint8 (a quarter of float32's bytes) and are normalised on
device (`local_batch`, inside the loop's programs).
Augmentation uses stateless TF random ops seeded by (seed, epoch, index), so the batches
depend only on (seed, epoch, keep mask). On one process every batch holds distinct kept
examples and an epoch trains all of them but the remainder of the last batch.

UNEVEN KEPT COUNTS ACROSS PROCESSES. Every process yields steps_per_epoch(mask) = (kept
examples overall) // (global batch) batches of local_batch rows per epoch, drawn only from
the kept examples of its own range. After a pruning that keeps more in some ranges than in
others (EEPrune prunes classes unevenly), a process whose range keeps more than
steps * local_batch trains a fresh random subset of its kept examples each epoch and leaves
the rest untrained that epoch; a process whose range keeps fewer repeats its kept examples
(repeat): each one floor or ceil of steps * local_batch / local_kept times per epoch. The
run trains as many steps as the device backend would, but examples of lightly pruned ranges
are under-sampled and those of heavily pruned ranges over-sampled. The device backend
samples every kept example exactly once per epoch (a global permutation); tested in
tests/test_host_paths.py with two processes.

Augmentation by `config.data.augment`: 'cifar' = zero padding of 4 + random image_size
crop + horizontal flip; 'imagenet' = random resized crop (sample_distorted_bounding_box,
area 8%..100%, ratio 3/4..4/3) resized bilinearly, without antialiasing, to image_size + flip (of TFDS JPEGs only the crop
window is decoded: decode_and_crop_jpeg, the same window; values near its edges differ
by a few levels from decoding the whole image), eval = resize of the shorter
side to image_size / 0.875 and a central image_size crop; 'none'. For 'cifar'/'none' (and
all 'digits'/'npz' images) images are brought to image_size as in `sources.load_arrays`,
so with augment='none' this backend and the device backend yield identical images.

Eval/scoring: every process yields num_eval_steps(split) batches; short and missing
batches are padded with valid=False rows so the global batches line up.
"""

import collections
import dataclasses
import functools
import hashlib
import io
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from eeprune_jax import parallel
from eeprune_jax import workdir as workdir_lib
from eeprune_jax.data import PAD_INDEX, HostBatchPipeline, sources
from eeprune_jax.data.sources import ceil_div, pixels

# The training shuffle buffer holds this many bytes of records (encoded images for TFDS):
# it bounds the host memory it takes and the reading before a pipeline's first batch.
# CIFAR-sized splits (~2.4 kB a record) fit whole (a full shuffle); ImageNet (~110 kB)
# gets ~1,200 examples, or SHUFFLE_BUFFER_BATCHES local batches if more, plus a new file
# order every epoch.
SHUFFLE_BUFFER_BYTES = 128 * 2**20
SHUFFLE_BUFFER_BATCHES = 16  # as google/flax examples/imagenet: 16 batches
IMAGENET_CROP_FRACTION = 0.875
# Epochs one training pipeline serves (then a new one starts); it reads ahead into the next.
EPOCHS_PER_PIPELINE = 1000
DEVICE_PREFETCH = 1  # train/eval feeds uploaded ahead of the one the loop runs.


@functools.lru_cache(maxsize=1)
def _tf() -> Any:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # tf.data runs on the host; keep TF away from the accelerators JAX uses.
  try:
    tf.config.set_visible_devices([], 'GPU')
    tf.config.set_visible_devices([], 'TPU')
  except (RuntimeError, ValueError):
    pass  # devices already initialised, or no such device type.
  return tf


def _mask_key(keep_mask: np.ndarray | None) -> str:
  """A short identity of a keep mask (None: all kept)."""
  if keep_mask is None:
    return 'all'
  return hashlib.sha256(np.packbits(np.asarray(keep_mask, bool)).tobytes()).hexdigest()


@dataclasses.dataclass
class _LivePipeline:
  """A mask's training pipeline and the epoch at whose start it stands."""
  key: str
  next_epoch: int
  iterator: Iterator[dict[str, np.ndarray]]


def _derive_seed(*parts: int) -> int:
  """A 31-bit seed that depends on all parts (stable across runs and hosts)."""
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


class TfDataPipeline(HostBatchPipeline):
  """tf.data on the host; see the module docstring."""

  def __init__(self, data_config: Any, *, batch_size: int, eval_batch_size: int,
               mesh: Mesh, seed: int, workdir: Any = None):
    super().__init__(data_config, batch_size=batch_size, eval_batch_size=eval_batch_size,
                     mesh=mesh, seed=seed)
    self._label_cache = None if workdir is None else workdir_lib.RunDir(workdir).train_labels
    self._tf = _tf()
    self._local_bs = parallel.local_batch_size(batch_size)
    self._local_eval_bs = parallel.local_batch_size(eval_batch_size)
    self._pid, self._nproc = jax.process_index(), jax.process_count()
    self._stored = sources.source_of(data_config).stored
    self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    self._train_labels: np.ndarray | None = None
    self._live: _LivePipeline | None = None  # the current mask's training pipeline
    if self._stored:
      self._decode = sources.decode_fn(data_config)
    # ImageNet-style training crops of stored JPEGs decode only the crop window.
    self.fused_jpeg_crop = (self._stored and data_config.augment == 'imagenet' and
                            sources.image_format(data_config) == 'jpeg')

  @property
  def train_labels(self) -> np.ndarray:  # pytype: disable=signature-mismatch
    """int32 [num_train] labels in canonical order: from the workdir's cache, or read once
    (on first use): each process reads its range's labels only (for TFDS: parallel shard
    reads, no pixels), all processes gather them, process 0 writes the cache atomically.
    Every process must see the same workdir (as Orbax needs)."""
    if self._train_labels is None:
      self._train_labels = self._read_train_labels()
    return self._train_labels

  def _read_train_labels(self) -> np.ndarray:
    n = self.info.num_train
    path = self._label_cache
    if path is not None and path.exists():
      labels = np.load(io.BytesIO(path.read_bytes()))
      if labels.shape == (n,):
        return labels.astype(np.int32)
    start, end = self._range('train')
    labels = sources.load_labels(self.data_config, 'train', start, end)
    if self._nproc > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      ranges = [sources.process_range(n, p, self._nproc) for p in range(self._nproc)]
      padded = np.zeros(max(e - s for s, e in ranges), np.int32)
      padded[:len(labels)] = labels
      gathered = np.asarray(multihost_utils.process_allgather(padded))
      labels = np.concatenate([gathered[p, :e - s] for p, (s, e) in enumerate(ranges)])
    if path is not None and self._pid == 0:
      path.parent.mkdir(parents=True, exist_ok=True)
      workdir_lib.write_npy(path, labels)
    return labels

  def _numpy(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in self._arrays:
      images, labels = sources.load_arrays(self.data_config, split)
      self._arrays[split] = images, labels.astype(np.int32)
    return self._arrays[split]

  def _range(self, split: str) -> tuple[int, int]:
    return sources.process_range(self._num_split(split), self._pid, self._nproc)

  def shuffle_buffer(self, local_kept: int) -> int:
    """Examples in the training shuffle buffer: SHUFFLE_BUFFER_BYTES of records, at least
    SHUFFLE_BUFFER_BATCHES local batches, at most this host's kept examples."""
    per_record = sources.mean_record_bytes(self.data_config, 'train')
    if per_record <= 0:  # metadata without sizes: the whole range
      return local_kept
    fit = max(SHUFFLE_BUFFER_BATCHES * self._local_bs, int(SHUFFLE_BUFFER_BYTES // per_record))
    return max(1, min(local_kept, fit))

  def _source(self, split: str, start: int, end: int, file_seed: Any = None) -> Any:
    """(index int64, image, label int32) of examples [start, end); images still encoded
    for stored sources (TFDS: shard files read in parallel, their order drawn from
    `file_seed` when given), uint8 at image_size for in-memory ones (canonical order)."""
    tf = self._tf
    if self._stored:
      return sources.stream(self.data_config, split, start, end, file_seed)
    images, labels = self._numpy(split)
    ds = tf.data.Dataset.from_tensor_slices((images[start:end], labels[start:end]))
    return ds.enumerate(start).map(
        pixels.tf_plain(lambda i, x: (i, x[0], tf.cast(x[1], tf.int32))))

  def _decode_image(self, image: Any) -> Any:
    """uint8 [H, W, C]: at image_size, except TFDS images for 'imagenet' (stored size)."""
    if not self._stored:
      return image  # load_arrays already brought it to image_size.
    image = self._decode(image)
    if self.data_config.augment == 'imagenet':
      return image  # the crops resize from the stored image.
    return pixels.tf_resize_uint8(image, self.data_config.image_size)

  def _preprocess(self, index: Any, image: Any, label: Any, aug_seed: int, *,
                  train: bool) -> dict[str, Any]:
    tf = self._tf
    size, kind = self.data_config.image_size, self.data_config.augment
    if train and kind == 'imagenet' and self.fused_jpeg_crop:
      image = self._imagenet_crop(None, self._aug_seeds(aug_seed, index)[0], encoded=image)
      image = tf.image.stateless_random_flip_left_right(
          image, self._aug_seeds(aug_seed, index)[1])
      return {'image': image, 'label': label, 'index': tf.cast(index, tf.int32),
              'valid': tf.constant(True)}
    image = self._decode_image(image)
    if kind == 'imagenet' and self._stored and not train:
      image = self._imagenet_eval(image)
    if train and kind != 'none':
      seeds = self._aug_seeds(aug_seed, index)
      if kind == 'cifar':
        pad = 4
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, (size, size, image.shape[-1]), seeds[0])
      else:
        image = self._imagenet_crop(image, seeds[0])
      image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    # Stays uint8 (a quarter of float32's bytes host->device); `local_batch` normalises.
    return {'image': image, 'label': label, 'index': tf.cast(index, tf.int32),
            'valid': tf.constant(True)}

  def _aug_seeds(self, aug_seed: int, index: Any) -> Any:
    """An example's stateless seeds (crop, flip, spare) from (epoch seed, index)."""
    tf = self._tf
    return tf.random.experimental.stateless_split(
        tf.stack([tf.cast(aug_seed, tf.int64), tf.cast(index, tf.int64)]), 3)

  def _imagenet_crop(self, image: Any, seed: Any, encoded: Any = None) -> Any:
    """Random resized crop of a decoded image, or, given the `encoded` JPEG, of the crop
    window decoded alone (decode_and_crop_jpeg: the rest of the image is never decoded)."""
    tf = self._tf
    size = self.data_config.image_size
    shape = tf.shape(image) if encoded is None else tf.image.extract_jpeg_shape(encoded)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    if encoded is None:
      crop = tf.slice(image, begin, crop_size)
    else:
      window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
      crop = tf.image.decode_and_crop_jpeg(encoded, window, channels=self.info.image_shape[-1])
    # Not antialiased (as google/flax's ImageNet pipeline): antialiasing took 1.2 ms of the
    # 2.6 per example; training crops of photos shrink by at most ~1.8x.
    out = tf.image.resize(crop, (size, size), method='bilinear')
    out = tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)
    return tf.ensure_shape(out, (size, size, self.info.image_shape[-1]))

  def _imagenet_eval(self, image: Any) -> Any:
    tf = self._tf
    size = self.data_config.image_size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    resize_to = size / IMAGENET_CROP_FRACTION
    scale = resize_to / tf.reduce_min(shape)
    new_hw = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new_hw, method='bilinear', antialias=True)
    top = (new_hw[0] - size) // 2
    left = (new_hw[1] - size) // 2
    image = tf.slice(image, [top, left, 0], [size, size, -1])
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return tf.ensure_shape(image, (size, size, self.info.image_shape[-1]))

  def _train_host(self, epoch: int, keep_mask: np.ndarray | None, first_step: int
                  ) -> Iterator[dict[str, np.ndarray]]:
    """This host's uint8 batches of the epoch from batch `first_step` on (a resume: the
    batches before it are skipped undecoded), from the mask's pipeline when it stands at
    the start of this epoch, else from a new one."""
    steps = self.steps_per_epoch(keep_mask)
    key = _mask_key(keep_mask)
    live = self._live
    if live is None or live.key != key or live.next_epoch != epoch or first_step:
      live = self._live = _LivePipeline(key, epoch, iter(
          self._epochs_dataset(keep_mask, epoch, first_step, steps)))
    return self._take_epoch(live, epoch, steps - first_step)

  def close(self) -> None:
    """Frees the live training pipeline's tf.data iterator now, at a known point. Left to
    the garbage collector, its destructor (which waits for the iterator's threads, the
    autotuner's included, while holding the GIL) ran inside whatever collection found it:
    under load, later work in the same process stalled there for 26-88 s
    (docs/test_suite.md)."""
    self._live = None

  def _take_epoch(self, live: '_LivePipeline', epoch: int, n: int
                  ) -> Iterator[dict[str, np.ndarray]]:
    """The next n batches of the live pipeline (one epoch's)."""
    done = 0
    try:
      for _ in range(n):
        batch = next(live.iterator)
        done += 1
        if done == n:  # the pipeline now stands at the next epoch's start
          live.next_epoch = epoch + 1
        yield batch
    finally:
      if done < n and self._live is live:  # stopped part-way: its position is lost
        self._live = None

  def _epochs_dataset(self, keep_mask: np.ndarray | None, first_epoch: int,
                      first_step: int, steps: int) -> Any:
    """One tf.data pipeline for the mask: epochs first_epoch.. (EPOCHS_PER_PIPELINE of
    them) back to back, each the kept examples of this host's range shuffled by (seed,
    epoch), repeated as needed, augmented, cut into `steps` local batches."""
    tf = self._tf
    kept = self.kept_indices(keep_mask)
    start, end = self._range('train')
    local_kept = int(np.count_nonzero((kept >= start) & (kept < end)))
    if local_kept == 0:
      raise ValueError(f'process {self._pid} reads examples [{start}, {end}) of '
                       f'{self.info.name!r} but the keep mask keeps none of them.')
    table = None if keep_mask is None else tf.constant(np.asarray(keep_mask, bool))
    epochs = range(first_epoch, first_epoch + EPOCHS_PER_PIPELINE)
    shuffle_seeds = tf.constant([_derive_seed(self.seed, e, 0) for e in epochs], tf.int64)
    aug_seeds = tf.constant([_derive_seed(self.seed, e, 1) for e in epochs], tf.int64)
    file_seeds = tf.constant([[_derive_seed(self.seed, e, 2), 0] for e in epochs], tf.int64)
    lb = self._local_bs
    buffer = self.shuffle_buffer(local_kept)

    def one_epoch(k):
      records = self._source('train', start, end, file_seeds[k])
      if table is not None:
        records = records.filter(pixels.tf_plain(lambda i, img, lab: tf.gather(table, i)))
      ds = records.shuffle(buffer, seed=shuffle_seeds[k], reshuffle_each_iteration=True)
      # A resume drops the records of the batches it skips before decoding them;
      # augmentation seeds depend on (epoch, index) only, so the later batches are unchanged.
      skip = tf.where(k == 0, tf.constant(first_step * lb, tf.int64), tf.constant(0, tf.int64))
      if steps * lb > local_kept:  # a host short of kept examples repeats them
        ds = ds.repeat()
      augment = lambda i, img, lab: self._preprocess(i, img, lab, aug_seeds[k], train=True)
      ds = ds.skip(skip).map(pixels.tf_plain(augment), num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)
      take = tf.where(k == 0, tf.constant(steps - first_step, tf.int64),
                      tf.constant(steps, tf.int64))
      return ds.batch(lb, drop_remainder=True).take(take)

    ds = tf.data.Dataset.range(len(epochs)).flat_map(pixels.tf_plain(one_epoch))
    return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

  def num_eval_steps(self, split: str) -> int:
    """Batches per process: enough for the largest per-process part."""
    n = self._num_split(split)
    largest = max(e - s for s, e in (sources.process_range(n, p, self._nproc)
                                     for p in range(self._nproc)))
    return ceil_div(largest, self._local_eval_bs)

  def _eval_host(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    """This host's uint8 eval batches, num_eval_steps(split) of them (padded)."""
    tf = self._tf
    start, end = self._range(split)
    steps = self.num_eval_steps(split)
    ds = self._source(split, start, end).map(
        pixels.tf_plain(lambda i, img, lab: self._preprocess(i, img, lab, 0, train=False)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(self._local_eval_bs).prefetch(tf.data.AUTOTUNE)
    return self._padded(ds.as_numpy_iterator(), steps)

  def _padded(self, batches: Iterator[dict[str, np.ndarray]], steps: int
              ) -> Iterator[dict[str, np.ndarray]]:
    b = self._local_eval_bs
    pad_row = {'image': np.zeros(self.info.image_shape, np.uint8),
               'label': np.int32(0), 'index': np.int32(PAD_INDEX), 'valid': np.False_}
    done = 0
    for batch in batches:
      n = len(batch['index'])
      if n < b:
        batch = {k: np.concatenate([v, np.repeat(pad_row[k][None], b - n, axis=0)])
                 for k, v in batch.items()}
      yield batch
      done += 1
    for _ in range(steps - done):
      yield {k: np.repeat(v[None], b, axis=0) for k, v in pad_row.items()}

  # --- Feeds: one host batch each ---------------------------------------------------------

  def max_steps_per_feed(self) -> int:
    """Batches stream from the host: one step per feed."""
    return 1

  def train_feeds(self, epoch: int, keep_mask: np.ndarray | None, first_step: int,
                  steps_per_feed: int) -> Iterator[Any]:
    """The epoch's global batches from `first_step` on, one per feed."""
    del steps_per_feed  # always one
    return self._feeds(self._train_host(epoch, keep_mask, first_step))

  def eval_feeds(self, split: str) -> Iterator[tuple[Any, int]]:
    """Every eval batch of the split, one per feed."""
    return ((batch, 1) for batch in self._feeds(self._eval_host(split)))

  def _feeds(self, batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, jax.Array]]:
    """Host batches uploaded as they are (uint8 images), for the loop's programs, one
    batch ahead: the next batch's (asynchronous) transfer overlaps the current step."""
    ahead: collections.deque[dict[str, jax.Array]] = collections.deque()
    for batch in batches:
      ahead.append(parallel.host_to_global(self.mesh, batch))
      if len(ahead) > DEVICE_PREFETCH:
        yield ahead.popleft()
    while ahead:
      yield ahead.popleft()
