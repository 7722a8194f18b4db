"""'digits': the scikit-learn handwritten digits, shipped with scikit-learn (no network).

1,797 8x8 images, values 0..16, 10 classes. Pixels are scaled to uint8 with
round(v * 255 / 16) and resized to `image_size` with Pillow's bilinear filter, 1 channel.
Split: example i (in `load_digits` order) is in 'test' when i % 5 == 0, else in 'train'
(1,437 train, 360 test); canonical order is the load_digits order (and a slice such as
`train[:500]` counts in it). Normalisation statistics are computed on the (small) resized
train split.
"""

import functools
import gzip
import importlib.util
import pathlib
from typing import Any, Sequence

import numpy as np

from eeprune_jax.data.sources import base
from eeprune_jax.data.sources import pixels
from eeprune_jax.data.sources import splits

_TEST_EVERY = 5


def csv_path() -> pathlib.Path:
  """scikit-learn's `digits.csv.gz`, found without importing scikit-learn."""
  # Importing sklearn (for `load_digits`) cost every run's start 2 CPU-seconds here
  # (`python -c 'import sklearn.datasets'`); `find_spec` of a top-level package locates it
  # without executing it.
  spec = importlib.util.find_spec('sklearn')
  if spec is None or spec.origin is None:
    raise ModuleNotFoundError("data.source='digits' reads scikit-learn's copy of the digits: "
                              'pip install scikit-learn')
  return pathlib.Path(spec.origin).parent / 'datasets' / 'data' / 'digits.csv.gz'


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
  # What `sklearn.datasets.load_digits` reads: one row per image, 64 pixels then the label.
  with gzip.open(csv_path(), 'rt') as f:
    rows = np.loadtxt(f, delimiter=',')
  images = np.round(rows[:, :-1].reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
  return images[..., None], rows[:, -1].astype(np.int32)


def _base_split(name: str) -> np.ndarray:
  n = _raw()[1].shape[0]
  is_test = np.arange(n) % _TEST_EVERY == 0
  if name == 'train':
    return np.flatnonzero(~is_test)
  if name == 'test':
    return np.flatnonzero(is_test)
  raise ValueError(f"digits has splits 'train' and 'test', not {name!r}.")


def _positions(split: str) -> np.ndarray:
  """load_digits positions of a (possibly sliced) split, in canonical order."""
  sl = splits.parse_split(split)
  base_positions = _base_split(sl.name)
  start, end = sl.range(len(base_positions))
  return base_positions[start:end]


@functools.lru_cache(maxsize=8)
def _arrays(split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  images, labels = _raw()
  sel = _positions(split)
  out = pixels.resize_uint8(images[sel], image_size), labels[sel]
  for a in out:
    a.flags.writeable = False  # cached: callers must not mutate it.
  return out


@base.register('digits')
class Digits(base.Source):
  """The scikit-learn digits (see the module docstring)."""

  def info(self, data_config: Any) -> base.DatasetInfo:
    size = data_config.image_size
    images, _ = _arrays(data_config.train_split, size)
    x = images.astype(np.float64)
    return base.DatasetInfo(
        name=data_config.name or 'digits', source=self.name, num_classes=10,
        num_train=len(_positions(data_config.train_split)),
        num_eval=len(_positions(data_config.eval_split)),
        image_shape=(size, size, 1), class_names=tuple(str(i) for i in range(10)),
        mean=(float(x.mean()),), std=(float(x.std()),))

  def num_examples(self, data_config: Any, split: str) -> int:
    return len(_positions(split))

  def labels(self, data_config: Any, split: str, start: int = 0,
             end: int | None = None) -> np.ndarray:
    return _raw()[1][_positions(split)][start:end].copy()

  def arrays(self, data_config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _arrays(split, data_config.image_size)
    return images.copy(), labels.copy()

  def images(self, data_config: Any, split: str, indices: Sequence[int]) -> np.ndarray:
    return _arrays(split, data_config.image_size)[0][list(indices)].copy()
