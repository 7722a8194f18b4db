"""'npz': arrays from `config.data.npz_path`.

Split `s` is read from `{s}_images` and `{s}_labels` (uint8 [N,H,W] or [N,H,W,C]; 'train'
may also be plain `images`/`labels`), or from the JPEG layout `{s}_jpeg` (concatenated
JPEG files), `{s}_offsets` (N+1) and `{s}_labels`, decoded with Pillow. An optional
`class_names` array names the classes; without it the classes are counted on the whole
train split. Canonical order is the array order. Images whose size differs from
`image_size` are resized with Pillow's bilinear filter. Sizes and channels come from the
arrays' headers, without loading them.
"""

import os
import zipfile
from typing import Any, Sequence

import numpy as np

from eeprune_jax.data.sources import base
from eeprune_jax.data.sources import known
from eeprune_jax.data.sources import pixels
from eeprune_jax.data.sources import splits


def _keys(path: str) -> list[str]:
  if not path:
    raise ValueError("config.data.source is 'npz' but config.data.npz_path is empty.")
  if not os.path.exists(path):
    raise FileNotFoundError(f'npz file {path!r} (config.data.npz_path) does not exist.')
  with np.load(path, allow_pickle=False) as f:
    return list(f.files)


def _layout(path: str, split: str) -> tuple[str, str]:
  """Returns ('raw', images_key) or ('jpeg', prefix) for a split of an npz file."""
  keys = _keys(path)
  if f'{split}_images' in keys:
    return 'raw', f'{split}_images'
  if f'{split}_jpeg' in keys:
    for k in (f'{split}_offsets', f'{split}_labels'):
      if k not in keys:
        raise KeyError(f'npz file {path!r} has {split}_jpeg but no key {k!r} '
                       f'(keys: {sorted(keys)}).')
    return 'jpeg', split
  if split == 'train' and 'images' in keys:
    return 'raw', 'images'
  wanted = f"'{split}_images' or '{split}_jpeg'" + (" or 'images'" if split == 'train' else '')
  raise KeyError(f'npz file {path!r} has no key {wanted} for split {split!r} '
                 f'(keys: {sorted(keys)}).')


def _labels_key(path: str, split: str, layout: str, key: str) -> str:
  if layout == 'jpeg':
    return f'{split}_labels'
  lkey = 'labels' if key == 'images' else f'{split}_labels'
  if lkey not in _keys(path):
    raise KeyError(f'npz file {path!r} has {key!r} but no key {lkey!r}.')
  return lkey


def _member_shape(path: str, key: str) -> tuple[int, ...]:
  """Shape of one array of an .npz, read from its header only (no data load)."""
  with zipfile.ZipFile(path) as z, z.open(key + '.npy') as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, _ = np.lib.format.read_array_header_1_0(f)
    else:
      shape, _, _ = np.lib.format.read_array_header_2_0(f)
  return tuple(shape)


def _base_count(path: str, name: str) -> int:
  """Number of examples of an unsliced split of an npz file (headers only for raw arrays)."""
  layout, key = _layout(path, name)
  if layout == 'raw':
    return _member_shape(path, key)[0]
  return _member_shape(path, f'{name}_offsets')[0] - 1


def _slice(path: str, split: str) -> tuple[str, int, int]:
  """(base split name, start, end) of a possibly sliced split spec of an npz file."""
  return splits.slice_range(split, lambda name: _base_count(path, name))


def _raw_arrays(f: Any, path: str, name: str, key: str) -> tuple[np.ndarray, np.ndarray]:
  """A raw layout's whole split, checked."""
  images, labels = f[key], f[_labels_key(path, name, 'raw', key)]
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f'npz file {path!r}: {key!r} must be uint8 [N,H,W] or [N,H,W,C], '
                     f'got {images.dtype} {images.shape}.')
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f'npz file {path!r}, split {name!r}: {images.shape[0]} images but '
                     f'{labels.shape[0]} labels.')
  return images, labels


def _channels(path: str, name: str) -> int:
  layout, key = _layout(path, name)
  if layout == 'raw':
    shape = _member_shape(path, key)
    return shape[3] if len(shape) == 4 else 1
  with np.load(path, allow_pickle=False) as f:
    offsets = f[f'{name}_offsets']
    return pixels.decode_jpeg(f[f'{name}_jpeg'][offsets[0]:offsets[1]]).shape[-1]


@base.register('npz')
class Npz(base.Source):
  """Arrays of an .npz file (see the module docstring)."""

  def config_errors(self, data_config: Any) -> list[str]:
    path = data_config.npz_path
    if path and os.path.exists(path):
      return []
    return [f'config.data.npz_path={path!r} is not a file: point it at an .npz with images '
            'and labels.']

  def info(self, data_config: Any) -> base.DatasetInfo:
    path, size = data_config.npz_path, data_config.image_size
    channels = _channels(path, _slice(path, data_config.train_split)[0])
    with np.load(path, allow_pickle=False) as f:
      class_names = (tuple(str(c) for c in f['class_names'])
                     if 'class_names' in f.files else None)
    name = data_config.name or os.path.splitext(os.path.basename(path))[0]
    if class_names is None:
      # Classes counted on the whole train split, so a slice that misses a class keeps it.
      whole_train = splits.parse_split(data_config.train_split).name
      num_classes = int(self.labels(data_config, whole_train).max()) + 1
      class_names = known.named_classes(name, None, num_classes)
    mean, std = known.stats(name, channels)
    return base.DatasetInfo(
        name=name, source=self.name, num_classes=len(class_names),
        num_train=self.num_examples(data_config, data_config.train_split),
        num_eval=self.num_examples(data_config, data_config.eval_split),
        image_shape=(size, size, channels), class_names=class_names, mean=mean, std=std)

  def num_examples(self, data_config: Any, split: str) -> int:
    _, start, end = _slice(data_config.npz_path, split)
    return end - start

  def labels(self, data_config: Any, split: str, start: int = 0,
             end: int | None = None) -> np.ndarray:
    path = data_config.npz_path
    name, s0, s1 = _slice(path, split)
    layout, key = _layout(path, name)
    with np.load(path, allow_pickle=False) as f:
      return f[_labels_key(path, name, layout, key)][s0:s1][start:end].astype(np.int32)

  def arrays(self, data_config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    path = data_config.npz_path
    name, start, end = _slice(path, split)
    layout, key = _layout(path, name)
    with np.load(path, allow_pickle=False) as f:
      if layout == 'raw':
        images, labels = _raw_arrays(f, path, name, key)
        images, labels = images[start:end], labels[start:end]
      else:
        offsets, labels = f[f'{name}_offsets'], f[f'{name}_labels']
        if len(offsets) - 1 != labels.shape[0]:
          raise ValueError(f'npz file {path!r}, split {name!r}: {len(offsets) - 1} images '
                           f'but {labels.shape[0]} labels.')
        images = pixels.decode_jpegs(f[f'{name}_jpeg'], offsets, start, end)
        labels = labels[start:end]
    return pixels.resize_uint8(images, data_config.image_size), labels.astype(np.int32)

  def images(self, data_config: Any, split: str, indices: Sequence[int]) -> np.ndarray:
    path = data_config.npz_path
    name, start, _ = _slice(path, split)
    layout, key = _layout(path, name)
    with np.load(path, allow_pickle=False) as f:
      if layout == 'raw':
        images = f[key][[start + i for i in indices]]
        images = images[..., None] if images.ndim == 3 else images
      else:
        data, offsets = f[f'{name}_jpeg'], f[f'{name}_offsets']
        images = np.stack([pixels.decode_jpeg(data[offsets[start + i]:offsets[start + i + 1]])
                           for i in indices])
    return pixels.resize_uint8(images, data_config.image_size)
