"""'tfds': any TFDS image classification data set (features 'image' and 'label').

`config.data.name` from `config.data.data_dir` (a local path or gs:// URL; '' = the TFDS
default). A data set not prepared there is downloaded and prepared by TFDS
(`data.download`, see `data/download.py`); without network, with download=False, or with
files to fetch by hand, a `DatasetNotPreparedError` says where it looked and how to fix it.

CANONICAL ORDER: shard file by shard file, record by record, enumerated from 0, the order
in which `builder.as_dataset(split, shuffle_files=False,
read_config=tfds.ReadConfig(interleave_cycle_length=1))` yields the split. It is also the
order of TFDS slicing (`train[a:b]`: its k-th example has index a + k) and of the
ArrayRecord files `tfds.data_source` reads. A record's shard file and its position there
give its canonical index whatever order the files are read in. A split
spec may itself be a slice (e.g. `train[:1000]`); indices then count from its start.

`stream` (the tf.data backend, labels, arrays) reads the TFRecord shard files itself, 16
at once, in parallel, interleaved in a fixed order (or one shuffled per epoch), and indexes
each record by its shard's first index plus its position in the file; `records` (grain)
reads ArrayRecord files at random. Records keep their images encoded (cheap to filter and
shuffle); `decode_fn` decodes one
to uint8 at its stored size. `arrays`/`images` resize with `tf.image.resize(...,
'bilinear', antialias=True)` rounded to uint8, only when the stored size differs (so
CIFAR at image_size=32 is untouched).

TensorFlow and TFDS are imported inside the functions only, so the other sources work on
machines without TensorFlow.
"""

import concurrent.futures
import os
from typing import Any, Callable, Sequence

import numpy as np

from eeprune_jax.data import download
from eeprune_jax.data import random_access
from eeprune_jax.data.sources import base
from eeprune_jax.data.sources import known
from eeprune_jax.data.sources import pixels


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS data set is not prepared in the data dir and cannot be downloaded here."""


class UnknownDatasetError(ValueError):
  """`config.data.name` is not a data set TFDS knows."""


_INTERLEAVE_FILES = 16  # shard files read at once
_EMPTY_NAME = "config.data.source is 'tfds' but config.data.name is empty (e.g. 'cifar10')."


def _data_dir(data_config: Any) -> str | None:
  return data_config.data_dir or None


def builder(data_config: Any) -> Any:
  """The TFDS builder of `config.data.name`, prepared (downloading it if allowed and
  possible); a DatasetNotPreparedError with the remedy otherwise."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = data_config.name
  if not name:
    raise ValueError(_EMPTY_NAME)
  data_dir = _data_dir(data_config)
  b = tfds.builder(name, data_dir=data_dir)
  if b.is_prepared():
    return b
  shown = data_dir or 'the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)'
  manual = download.needs_manual_files(b)
  reason = 'data.download=False'
  if data_config.get('download', True) and not manual:
    try:
      download.download_and_prepare(b)
      return b
    except download.DownloadUnavailableError as e:
      reason = f'downloading it failed: {e}'
  if manual:
    raise DatasetNotPreparedError(
        f'TFDS data set {name!r} is not prepared in data dir {shown!r} and its files must be '
        f'downloaded by hand: put them in {download.manual_dir(b)!r} (what it needs: '
        f'`tfds build {name} --manual_dir=...` prints the instructions), then run again; '
        f'TFDS prepares it from there.')
  raise DatasetNotPreparedError(
      f'TFDS data set {name!r} is not prepared in data dir {shown!r} (looked for '
      f'{os.fspath(b.data_dir)!r}) and {reason}. Remedy: on a machine with network '
      f'run `tfds build {name} --data_dir=<dir>` (manual-download data sets such as '
      f'imagenet2012 need their files in <dir>/downloads/manual), then copy the prepared '
      f'{name}/<version> folder into the data dir, or set config.data.data_dir to a '
      f'directory that holds it.')


def _registered_builder(data_config: Any) -> Any:
  """The builder of a registered data set, prepared or not; UnknownDatasetError if TFDS
  does not know the name."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = data_config.name
  if not name:
    raise ValueError(_EMPTY_NAME)
  try:
    return tfds.builder(name, data_dir=_data_dir(data_config))
  except tfds.core.DatasetNotFoundError:
    raise UnknownDatasetError(
        f'config.data.name={name!r} is not a TFDS data set registered in tensorflow_datasets '
        f'{tfds.__version__}: check the spelling (e.g. cifar10, cifar100, imagenet2012, '
        f'kmnist; `tfds.list_builders()` lists them all).') from None
  except (ValueError, AssertionError) as e:  # a bad config or version of a known data set
    raise UnknownDatasetError(f'config.data.name={name!r}: {str(e).splitlines()[0]}') from None


def _abs_range(b: Any, split: str) -> tuple[str, int, int]:
  """(base split name, start, end) of a possibly sliced split spec, absolute indices."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  splits = b.info.splits
  try:
    instrs = tfds.core.ReadInstruction.from_spec(split).to_absolute(splits)
  except (KeyError, ValueError, AssertionError) as e:
    raise ValueError(f'TFDS data set {b.name!r} has no split {split!r} '
                     f'(splits: {sorted(splits.keys())}): {e}') from e
  if len(instrs) != 1:
    raise ValueError(f'split {split!r} of {b.name!r}: compound splits (a+b) are not '
                     'supported; use one (possibly sliced) split.')
  ins = instrs[0]
  total = splits[ins.splitname].num_examples
  start = 0 if ins.from_ is None else ins.from_
  end = total if ins.to is None else ins.to
  if start >= end:
    raise ValueError(f'split {split!r} selects no example of the {total} in split '
                     f'{ins.splitname!r} of {b.name!r} (examples [{start}, {end})).')
  return ins.splitname, start, end


def _sub_range(b: Any, split: str, start: int, end: int | None) -> tuple[str, int, int]:
  """(base split, absolute start, absolute end) of examples [start, end) of a split."""
  base_name, s0, s1 = _abs_range(b, split)
  end = s1 - s0 if end is None else end
  if not 0 <= start <= end <= s1 - s0:
    raise ValueError(f'range [{start}, {end}) outside split {split!r} of size {s1 - s0}.')
  return base_name, s0 + start, s0 + end


@base.register('tfds')
class Tfds(base.Source):
  """A TFDS data set (see the module docstring)."""

  stored = True

  def config_errors(self, data_config: Any) -> list[str]:
    if data_config.name:
      return []
    return ["config.data.name is empty: with data.source='tfds' name a TFDS data set, "
            'e.g. cifar10.']

  def info(self, data_config: Any) -> base.DatasetInfo:
    b = builder(data_config)
    feats = b.info.features
    if 'image' not in feats or 'label' not in feats:
      raise ValueError(f'TFDS data set {data_config.name!r} has no image/label features '
                       f'({list(feats.keys())}).')
    channels = feats['image'].shape[-1] or 3
    label = feats['label']
    size = data_config.image_size
    _, s0, s1 = _abs_range(b, data_config.train_split)
    _, e0, e1 = _abs_range(b, data_config.eval_split)
    mean, std = known.stats(data_config.name, channels)
    return base.DatasetInfo(
        name=data_config.name, source=self.name, num_classes=label.num_classes,
        num_train=s1 - s0, num_eval=e1 - e0, image_shape=(size, size, channels),
        class_names=known.named_classes(data_config.name, label.names, label.num_classes),
        mean=mean, std=std)

  def class_metadata(self, data_config: Any) -> tuple[int, int, tuple[str, ...]]:
    """From the registered metadata: needs no prepared data and no network (TFDS knows
    the features of every registered data set from its code)."""
    name = data_config.name
    feats = _registered_builder(data_config).info.features
    if ('image' not in feats or 'label' not in feats or
        not hasattr(feats['label'], 'num_classes')):
      raise ValueError(f'TFDS data set {name!r} is not an image classification data set (it '
                       f'needs features image and label; it has {list(feats.keys())}).')
    label = feats['label']
    channels = feats['image'].shape[-1] or 3
    return label.num_classes, channels, known.named_classes(name, label.names,
                                                            label.num_classes)

  def num_examples(self, data_config: Any, split: str) -> int:
    _, start, end = _abs_range(builder(data_config), split)
    return end - start

  def stream(self, data_config: Any, split: str, start: int, end: int,
             file_seed: Any = None) -> Any:
    """The TFRecord shard files that hold [start, end), read _INTERLEAVE_FILES at once in
    parallel (deterministic interleave), each record indexed by its shard's first index
    plus its position in the file; `file_seed` shuffles the order of the files."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    b = builder(data_config)
    base_name, a0, a1 = _sub_range(b, split, start, end)
    if b.info.file_format != tfds.core.FileFormat.TFRECORD:
      raise ValueError(
          f'TFDS data set {data_config.name!r} in {b.data_dir} is stored as '
          f'{b.info.file_format.value}; the tf.data and device backends read TFRecord files. '
          "Use config.data.backend='grain', or convert a copy with `tfds convert_format "
          '--root_data_dir=<data_dir> --out_file_format=tfrecord`.')
    info = b.info.splits[base_name]
    bounds = np.concatenate([[0], np.cumsum(info.shard_lengths)]).astype(np.int64)
    first = int(np.searchsorted(bounds, a0, side='right')) - 1
    last = int(np.searchsorted(bounds, a1, side='left'))  # files [first, last) hold the range
    files = tf.constant([os.fspath(f) for f in info.filepaths[first:last]])
    # Index of each file's first record, counted from the split's (or slice's) example 0.
    offsets = tf.constant(bounds[first:last] - (a0 - start), tf.int64)
    lengths = tf.constant(np.diff(bounds)[first:last], tf.int64)
    order = tf.range(last - first, dtype=tf.int64)
    if file_seed is not None:
      order = tf.random.experimental.stateless_shuffle(order, file_seed)
    features, decoders = b.info.features, {'image': tfds.decode.SkipDecoding()}

    def read(f):
      # File f's records in [start, end) only; reading stops at the range's end (a slice at
      # the start of CIFAR-10's one 50,000-record training file read the whole file).
      lo = tf.maximum(start - offsets[f], 0)
      hi = tf.minimum(end - offsets[f], lengths[f])
      return tf.data.TFRecordDataset(files[f]).skip(lo).take(hi - lo).enumerate().map(
          pixels.tf_plain(lambda r, record: (offsets[f] + lo + r, record)))

    def parse(index, record):
      example = features.deserialize_example(record, decoders=decoders)
      return index, example['image'], tf.cast(example['label'], tf.int32)
    ds = tf.data.Dataset.from_tensor_slices(order).interleave(
        pixels.tf_plain(read), cycle_length=min(_INTERLEAVE_FILES, last - first),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.map(pixels.tf_plain(parse), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)

  def mean_record_bytes(self, data_config: Any, split: str) -> float:
    b = builder(data_config)
    info = b.info.splits[_abs_range(b, split)[0]]
    return info.num_bytes / max(1, info.num_examples)

  def decode_fn(self, data_config: Any) -> Callable[[Any], Any]:
    return builder(data_config).info.features['image'].decode_example

  def image_format(self, data_config: Any) -> str | None:
    return builder(data_config).info.features['image'].encoding_format

  def labels(self, data_config: Any, split: str, start: int = 0,
             end: int | None = None) -> np.ndarray:
    """The stream's labels, images left encoded."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    end = self.num_examples(data_config, split) if end is None else end
    ds = self.stream(data_config, split, start, end).map(
        pixels.tf_plain(lambda i, image, label: (i, label)),
        num_parallel_calls=tf.data.AUTOTUNE).batch(8192)
    labels = np.full(end - start, -1, np.int32)
    for index, batch in ds.as_numpy_iterator():
      labels[index - start] = batch
    if (labels < 0).any():
      raise ValueError(f'split {split!r} of {data_config.name!r}: read no label for '
                       f'{int((labels < 0).sum())} of examples [{start}, {end}); the shard '
                       'files do not match the metadata (shard_lengths): prepare it again.')
    return labels

  def arrays(self, data_config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    decode, size = self.decode_fn(data_config), data_config.image_size
    n = self.num_examples(data_config, split)
    ds = self.stream(data_config, split, 0, n).map(
        pixels.tf_plain(
            lambda i, img, lab: (i, pixels.tf_resize_uint8(decode(img), size), lab)),
        num_parallel_calls=tf.data.AUTOTUNE).batch(1024)
    parts = list(ds.as_numpy_iterator())
    if not parts:
      raise ValueError(f'split {split!r} of {data_config.name!r} is empty.')
    order = np.argsort(np.concatenate([p[0] for p in parts]), kind='stable')
    images = np.concatenate([p[1] for p in parts])[order]
    return images, np.concatenate([p[2] for p in parts])[order]

  def images(self, data_config: Any, split: str, indices: Sequence[int]) -> np.ndarray:
    decode, size = self.decode_fn(data_config), data_config.image_size
    out = []
    for i in indices:  # a one-record slice: TFDS reads from the shard that holds it
      for _, image, _ in self.stream(data_config, split, i, i + 1):
        out.append(pixels.tf_resize_uint8(decode(image), size).numpy())
    return np.stack(out)

  def records(self, data_config: Any, split: str) -> random_access.RecordSource:
    return TfdsRecords(builder(data_config), data_config.name, split)


class TfdsRecords(random_access.RecordSource):
  """A TFDS split in ArrayRecord files, read at random through `tfds.data_source`; a read
  fetches one record and parses it, the image staying encoded. TFDS's ArrayRecord order is
  the canonical order."""

  stored = True

  def __init__(self, b: Any, name: str, split: str):
    super().__init__()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    # TFDS 4.9 reads the alternative formats of dataset_info.json into the info's proto but
    # not into the list `as_data_source` consults: copy them over.
    info = b.info
    for fmt in info.as_proto.alternative_file_formats:
      if fmt not in {f.value for f in info.available_file_formats()}:
        info.alternative_file_formats.append(tfds.core.FileFormat(fmt))
    try:
      self._source = b.as_data_source(
          split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    except NotImplementedError:
      formats = sorted(f.value for f in b.info.available_file_formats())
      raise ValueError(
          f"config.data.backend='grain' reads TFDS data at random through "
          f'tfds.data_source, which needs ArrayRecord files, but {name!r} in '
          f'{b.data_dir} is stored as {formats}. Remedy: convert a copy with `tfds '
          f'convert_format --root_data_dir=<data_dir> --out_file_format=array_record` '
          f"(or prepare it with file_format='array_record'), or use "
          f"config.data.backend='tfdata'.") from None
    self._features = b.info.features
    self._decoders = {'image': tfds.decode.SkipDecoding()}

  def __len__(self) -> int:
    return len(self._source)

  def read(self, index: int, tag: Any = None) -> tuple[bytes, int]:
    record = self._source[index]
    self._log(tag, index, len(record))
    example = self._features.deserialize_example_np(record, decoders=self._decoders)
    return example['image'], int(example['label'])

  def labels(self) -> np.ndarray:
    """Reads every record once (threads; ArrayRecord reads release the GIL)."""
    n, chunk = len(self), 4096

    def part(start: int) -> np.ndarray:
      records = self._source.__getitems__(list(range(start, min(start + chunk, n))))
      return np.asarray([self._features.deserialize_example_np(
          r, decoders=self._decoders)['label'] for r in records], np.int32)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
      parts = list(pool.map(part, range(0, n, chunk)))
    return np.concatenate(parts) if parts else np.zeros((0,), np.int32)
