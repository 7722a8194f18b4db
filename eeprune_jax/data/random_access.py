"""Random-access record sources for the grain backend: example i of a split by index.

A source has `len()`, `read(i) -> (image, label)` and `stored`: whether images come at
their stored size (encoded bytes, decoded in the worker) or already at image_size
(uint8 arrays). Indices are the canonical ones of `sources` (a sliced split counts from
the start of its slice).

* in memory (`ArrayRecords`): the split decoded once ('digits', 'npz': small data sets, a
  JPEG npz is decoded once, not per epoch);
* stored records: each source that has them subclasses `RecordSource` (TFDS ArrayRecord
  files: `sources.tfds.TfdsRecords`). `sources.open_records` opens a split's source.

`log_reads` (tests, benchmarks) makes a source list every read as (tag, index, bytes of the
record), in this process (reads in grain worker processes stay there); the grain pipeline
tags a read with its epoch.
"""

from typing import Any

import numpy as np


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
