"""The source protocol: what every kind of data set answers, and the registry of kinds.

Each kind (`config.data.source`) is one module of this package that registers a `Source`
under its name (`@register('npz')`). The pipelines and the rest of the program reach a
source only through the package's functions, which resolve the split roles
('train'/'eval') once and hand a source a split spec (`splits`). A new kind of data set is
a new module here, imported by the package's `__init__`.

Two families:
* in memory (`stored = False`): the split is small enough to hold as uint8 arrays at
  image_size (`arrays`); the host backends read those arrays.
* stored (`stored = True`): records on disk hold encoded images at their stored size; the
  host backends stream them (`stream`, tf.data) or read them at random (`records`, grain)
  and decode them (`decode_fn`), so crops can be cut from the stored image.
"""

import dataclasses
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from eeprune_jax import registry
from eeprune_jax.data import random_access


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Cheap metadata of a data set as the pipelines deliver it."""
  name: str
  source: str
  num_classes: int
  num_train: int
  num_eval: int
  image_shape: tuple[int, int, int]  # (H, W, C) after resizing to image_size.
  class_names: tuple[str, ...]
  mean: tuple[float, ...]  # per channel, 0..255 units.
  std: tuple[float, ...]


class Source:
  """One kind of data set; `split` arguments are split specs, already resolved."""

  name = ''
  stored = False  # records hold encoded images at their stored size (see the module doc)

  def config_errors(self, data_config: Any) -> list[str]:
    """What is wrong with the config's fields for this source, each with its fix."""
    del data_config
    return []

  def info(self, data_config: Any) -> DatasetInfo:
    """Metadata of the configured train and eval splits (no full data load)."""
    raise NotImplementedError

  def class_metadata(self, data_config: Any) -> tuple[int, int, tuple[str, ...]]:
    """(num_classes, channels, class names), as cheaply as the source allows."""
    info = self.info(data_config)
    return info.num_classes, info.image_shape[-1], info.class_names

  def num_examples(self, data_config: Any, split: str) -> int:
    """Number of examples of a split (cheap)."""
    raise NotImplementedError

  def labels(self, data_config: Any, split: str, start: int = 0,
             end: int | None = None) -> np.ndarray:
    """int32 labels of examples [start, end) of a split, in canonical order, without
    decoding images."""
    raise NotImplementedError

  def arrays(self, data_config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N,S,S,C] (S = image_size) and labels int32 [N] in canonical order."""
    raise NotImplementedError

  def images(self, data_config: Any, split: str, indices: Sequence[int]) -> np.ndarray:
    """Images uint8 [len(indices),S,S,C] of these canonical indices, reading only them."""
    raise NotImplementedError

  def records(self, data_config: Any, split: str) -> random_access.RecordSource:
    """Random access by canonical index (the grain backend); in memory by default."""
    return random_access.ArrayRecords(*self.arrays(data_config, split))

  # Stored sources only (tf.data backend) -------------------------------------------------

  def stream(self, data_config: Any, split: str, start: int, end: int,
             file_seed: Any = None) -> Any:
    """tf.data of (int64 index, encoded image, int32 label) of the split's examples
    [start, end), each once, in the order the source reads them fastest (fixed, not
    necessarily canonical; `index` is the canonical one). `file_seed` (an int64 [2]
    tensor, usable inside tf.data functions) draws the order of the files read."""
    raise NotImplementedError(f'source {self.name!r} holds its data in memory: use arrays().')

  def decode_fn(self, data_config: Any) -> Callable[[Any], Any]:
    """A TF function: encoded image -> uint8 [H, W, C] at the stored size."""
    raise NotImplementedError(f'source {self.name!r} holds decoded images.')

  def mean_record_bytes(self, data_config: Any, split: str) -> float:
    """Mean bytes of one record (encoded image + label) of a split; in memory: the image."""
    del split
    return float(data_config.image_size ** 2 * self.class_metadata(data_config)[1])

  def image_format(self, data_config: Any) -> str | None:
    """How the records store images ('jpeg', 'png', None: unknown or decoded)."""
    del data_config
    return None


_REGISTRY: registry.Registry[Source] = registry.Registry('config.data.source')
_S = TypeVar('_S', bound=type)


def register(name: str) -> Callable[[_S], _S]:
  """Class decorator: registers one instance of the Source under `name`."""
  def add(cls: _S) -> _S:
    cls.name = name
    _REGISTRY.add(name, cls)
    return cls
  return add


names = _REGISTRY.names
get = _REGISTRY.get
