"""Random-access record sources for the grain backend: example i of a split by index.

A source has `len()`, `read(i) -> (image, label)` and `stored`: whether images come at
their stored size (encoded bytes, decoded in the worker) or already at image_size
(uint8 arrays). Indices are the canonical ones of `sources` (a sliced split counts from
the start of its slice).

* TFDS (`TfdsRecords`): a data set prepared with `file_format='array_record'` (or with
  ArrayRecord among its alternative formats, as `tfds convert_format` leaves it), read
  through `builder.as_data_source`; a read fetches one record and parses it, the image
  staying encoded. TFDS's ArrayRecord order is its canonical order (shard by shard, record
  by record), the order the tf.data backend enumerates.
* 'digits' / 'npz' (`ArrayRecords`): the split decoded once by `sources.load_arrays`
  (small data sets: a JPEG npz is decoded once, not per epoch).

`log_reads` (tests, benchmarks) makes a source list every read as (tag, index, bytes of the
record), in this process (reads in grain worker processes stay there); the grain pipeline
tags a read with its epoch.
"""

from typing import Any

import numpy as np

from eeprune_jax.data import sources


class RecordSource:
  """Example i of a split (see the module docstring)."""

  stored: bool  # images at their stored size, encoded (True) or uint8 at image_size.

  def __init__(self):
    self.log_reads = False
    self.reads: list[tuple[Any, int, int]] = []

  def __len__(self) -> int:
    raise NotImplementedError

  def read(self, index: int, tag: Any = None) -> tuple[Any, int]:
    """(image, label) of example `index`: encoded bytes or uint8 [S, S, C]."""
    raise NotImplementedError

  def read_indices(self, tag: Any = None) -> list[int]:
    """The indices logged with `tag` (all of them for None), in read order."""
    return [i for t, i, _ in self.reads if tag is None or t == tag]

  def labels(self) -> np.ndarray:
    """int32 [N] labels in canonical order."""
    raise NotImplementedError

  def _log(self, tag: Any, index: int, num_bytes: int) -> None:
    if self.log_reads:  # list.append is atomic: safe from grain's reader threads
      self.reads.append((tag, index, num_bytes))


class ArrayRecords(RecordSource):
  """A split held as uint8 arrays at image_size ('digits', 'npz')."""

  stored = False

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    super().__init__()
    self._images, self._labels = images, np.asarray(labels, np.int32)

  def __len__(self) -> int:
    return len(self._labels)

  def read(self, index: int, tag: Any = None) -> tuple[np.ndarray, int]:
    image = self._images[index]
    self._log(tag, index, image.nbytes)
    return image, int(self._labels[index])

  def labels(self) -> np.ndarray:
    return self._labels.copy()


class TfdsRecords(RecordSource):
  """A TFDS split in ArrayRecord files, read through `tfds.data_source`."""

  stored = True

  def __init__(self, data_config: Any, split: str):
    super().__init__()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = sources.tfds_builder(data_config)
    spec = sources.resolve_split(data_config, split)
    # TFDS 4.9 reads the alternative formats of dataset_info.json into the info's proto but
    # not into the list `as_data_source` consults: copy them over.
    info = builder.info
    for fmt in info.as_proto.alternative_file_formats:
      if fmt not in {f.value for f in info.available_file_formats()}:
        info.alternative_file_formats.append(tfds.core.FileFormat(fmt))
    try:
      self._source = builder.as_data_source(
          split=spec, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    except NotImplementedError:
      formats = sorted(f.value for f in builder.info.available_file_formats())
      raise ValueError(
          f"config.data.backend='grain' reads TFDS data at random through "
          f'tfds.data_source, which needs ArrayRecord files, but {data_config.name!r} in '
          f'{builder.data_dir} is stored as {formats}. Remedy: convert a copy with `tfds '
          f'convert_format --root_data_dir=<data_dir> --out_file_format=array_record` '
          f"(or prepare it with file_format='array_record'), or use "
          f"config.data.backend='tfdata'.") from None
    self._features = builder.info.features
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
    import concurrent.futures  # pylint: disable=g-import-not-at-top
    import os  # pylint: disable=g-import-not-at-top
    n, chunk = len(self), 4096

    def part(start: int) -> np.ndarray:
      records = self._source.__getitems__(list(range(start, min(start + chunk, n))))
      return np.asarray([self._features.deserialize_example_np(
          r, decoders=self._decoders)['label'] for r in records], np.int32)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
      parts = list(pool.map(part, range(0, n, chunk)))
    return np.concatenate(parts) if parts else np.zeros((0,), np.int32)


def open_split(data_config: Any, split: str) -> RecordSource:
  """The random-access source of split 'train'/'eval' (or a split name) of the config."""
  if data_config.source == 'tfds':
    return TfdsRecords(data_config, split)
  return ArrayRecords(*sources.load_arrays(data_config, split))
