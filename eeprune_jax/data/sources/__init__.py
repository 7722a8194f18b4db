"""Data set sources: what a split holds, in which order, and cheap metadata about it.

`config.data.source` names one kind, a module of this package behind one protocol
(`base.Source`): `digits` (scikit-learn's handwritten digits), `npz` (arrays or JPEGs in
an .npz file), `tfds` (any TFDS image classification data set). Each module's docstring
states its canonical order: every example of a split has a stable index, its position in
that order, which keep masks, scores and batches share. Split specs (`train[:10%]`) mean
the same examples for every source (`splits`); published statistics and class names of
named data sets live in `known`.

The functions below are the only way in: they resolve the roles 'train'/'eval' to
`config.data.train_split`/`eval_split` once (any other string is a split name) and call
the configured source. TensorFlow is imported by the 'tfds' source only, so 'digits' and
'npz' work on machines without it.
"""

from typing import Any, Callable, Sequence

import numpy as np

from eeprune_jax.data import random_access
from eeprune_jax.data.sources import base
from eeprune_jax.data.sources import digits  # registers 'digits'
from eeprune_jax.data.sources import npz  # registers 'npz'
from eeprune_jax.data.sources import tfds  # registers 'tfds'
from eeprune_jax.data.sources.base import DatasetInfo
from eeprune_jax.data.sources.known import named_classes
from eeprune_jax.data.sources.splits import (
    SplitSlice, ceil_div, parse_split, process_range, resolve_split, slice_range)
from eeprune_jax.data.sources.tfds import DatasetNotPreparedError, UnknownDatasetError

names = base.names


def source_of(data_config: Any) -> base.Source:
  """The configured source (`config.data.source`); a ValueError naming the known ones."""
  return base.get(data_config.source)


def _info_key(data_config: Any) -> tuple[Any, ...]:
  return tuple(data_config.get(k) for k in (
      'source', 'name', 'data_dir', 'npz_path', 'train_split', 'eval_split', 'image_size'))


_INFO_CACHE: dict[tuple[Any, ...], DatasetInfo] = {}


def dataset_info(data_config: Any) -> DatasetInfo:
  """Metadata of the configured data set; cheap (no full data load), cached per config."""
  key = _info_key(data_config)
  if key not in _INFO_CACHE:
    _INFO_CACHE[key] = source_of(data_config).info(data_config)
  return _INFO_CACHE[key]


def class_metadata(data_config: Any) -> tuple[int, int, tuple[str, ...]]:
  """(num_classes, channels, class names) of the configured data set, as cheaply as the
  source allows (for 'tfds' from the registered metadata: the data need not be prepared)."""
  return source_of(data_config).class_metadata(data_config)


def num_examples(data_config: Any, split: str) -> int:
  """Number of examples of a split (cheap)."""
  return source_of(data_config).num_examples(data_config, resolve_split(data_config, split))


def load_arrays(data_config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N,S,S,C] (S = image_size) and labels int32 [N] in canonical order."""
  return source_of(data_config).arrays(data_config, resolve_split(data_config, split))


def load_images(data_config: Any, split: str, indices: Sequence[int]) -> np.ndarray:
  """Images uint8 [len(indices),S,S,C] of the given canonical indices of a split, reading
  (for TFDS: one record each; for JPEG npz files: decoding) only those."""
  indices = [int(i) for i in indices]
  if not indices:
    size = data_config.image_size
    return np.zeros((0, size, size, dataset_info(data_config).image_shape[-1]), np.uint8)
  return source_of(data_config).images(data_config, resolve_split(data_config, split),
                                       indices)


def load_labels(data_config: Any, split: str, start: int = 0,
                end: int | None = None) -> np.ndarray:
  """Labels int32 of examples [start, end) (all by default) of a split in canonical order,
  without decoding images."""
  return source_of(data_config).labels(data_config, resolve_split(data_config, split),
                                       start, end)


def open_records(data_config: Any, split: str) -> random_access.RecordSource:
  """Random access by canonical index to a split (the grain backend)."""
  return source_of(data_config).records(data_config, resolve_split(data_config, split))


def stream(data_config: Any, split: str, start: int, end: int, file_seed: Any = None) -> Any:
  """tf.data of (int64 index, encoded image, int32 label) of examples [start, end) of a
  split, each once, in a fixed order that need not be canonical (`index` is), the files
  in an order drawn from `file_seed` when given; stored sources only
  (`source_of(config).stored`)."""
  return source_of(data_config).stream(data_config, resolve_split(data_config, split),
                                       start, end, file_seed)


def mean_record_bytes(data_config: Any, split: str) -> float:
  """Mean bytes of one record of a split (stored: encoded, from metadata)."""
  return source_of(data_config).mean_record_bytes(data_config,
                                                  resolve_split(data_config, split))


def decode_fn(data_config: Any) -> Callable[[Any], Any]:
  """A TF function: a stored record's encoded image -> uint8 [H, W, C] at its stored size."""
  return source_of(data_config).decode_fn(data_config)


def image_format(data_config: Any) -> str | None:
  """How the configured source stores images ('jpeg', 'png', None: unknown or decoded)."""
  return source_of(data_config).image_format(data_config)


__all__: Sequence[str] = (
    'DatasetInfo', 'DatasetNotPreparedError', 'SplitSlice', 'UnknownDatasetError',
    'ceil_div', 'class_metadata', 'dataset_info', 'decode_fn', 'digits', 'npz', 'image_format', 'load_arrays',
    'load_images', 'load_labels', 'mean_record_bytes', 'named_classes', 'names', 'num_examples', 'open_records',
    'parse_split', 'process_range', 'resolve_split', 'slice_range', 'source_of', 'stream',
    'tfds')
