"""Data set sources: what a split holds, in which order, and cheap metadata about it.

Three sources, chosen by `config.data.source`:

* 'tfds': any TFDS image classification data set `config.data.name` (features 'image'
  and 'label') from `config.data.data_dir` (a local path or gs:// URL; '' = the TFDS
  default). A data set not prepared there is downloaded and prepared by TFDS
  (`data.download`, see `download.py`); without network, with download=False, or with
  files to fetch by hand, a `DatasetNotPreparedError` says where it looked and how to fix it.
  CANONICAL ORDER: the order in which `builder.as_dataset(split, shuffle_files=False,
  read_config=tfds.ReadConfig(interleave_cycle_length=1))` yields the split, i.e. shard
  file by shard file, record by record, enumerated from 0. This is also the order of TFDS
  slicing (`train[a:b]`), so a process reading `train[a:b]` knows that its k-th example
  has index a + k. A split spec may itself be a slice (e.g. `train[:1000]`); indices then
  count from the start of that slice.
* 'digits': the scikit-learn handwritten digits (1,797 8x8 images, values 0..16,
  10 classes; shipped with scikit-learn, no network). Pixels are scaled to uint8 with
  round(v * 255 / 16) and resized to `image_size` with Pillow's bilinear filter, 1
  channel. Split: example i (in `load_digits` order) is in 'test' when i % 5 == 0, else
  in 'train' (1,437 train, 360 test); canonical order is the load_digits order (and a
  slice such as `train[:500]` counts in it).
* 'npz': arrays from `config.data.npz_path`. Split `s` is read from `{s}_images` and
  `{s}_labels` (uint8 [N,H,W] or [N,H,W,C]; 'train' may also be plain `images`/`labels`),
  or from the JPEG layout `{s}_jpeg` (concatenated JPEG files), `{s}_offsets` (N+1) and
  `{s}_labels`, decoded with Pillow. An optional `class_names` array names the classes.
  Canonical order is the array order. Images whose size differs from `image_size` are
  resized with Pillow's bilinear filter.

`load_arrays` yields uint8 images of shape (image_size, image_size, C). For 'tfds' the
resize is `tf.image.resize(..., 'bilinear', antialias=True)` rounded to uint8 and happens
only when the stored size differs (so CIFAR at image_size=32 is untouched).

Split names: 'train' and 'eval' given to `load_arrays` / `num_examples` are roles that
stand for `config.data.train_split` and `config.data.eval_split`; any other string is
taken as a split name of the source.

SPLIT SLICES, the same for every source: a split spec is `name` or `name[from:to]`, with
TFDS's syntax and semantics (https://www.tensorflow.org/datasets/splits), so a spec means
the same examples whichever source reads it:
* `from`/`to` are example counts (`train[:2000]`, `train[2000:]`, `train[-500:]`; negative
  counts from the end, as in Python) or percentages (`train[:10%]`, `test[25%:75%]`,
  fractional allowed; a '%' on either boundary makes both percentages), each percentage
  boundary rounded to the closest example, `round(p * N / 100)` with Python's round
  (TFDS's default 'closest' rounding);
* a boundary beyond the split (|from| or |to| > N) is an error, as is an empty slice;
* the slice holds the canonical examples [start, end) of the whole split, and its
  examples are indexed 0..end-start-1 in that order: stable indices count from the
  start of the slice, so `train[1000:]` example 0 is whole-split example 1000;
* one split per spec: compound specs (`train+test`) are refused; TFDS's `shard` unit
  works for 'tfds' only ('digits' and 'npz' have no shards).
For 'tfds' TFDS itself resolves the spec; 'digits' and 'npz' use `slice_range` below (no
TensorFlow needed), which tests check against TFDS on the same specs.

Normalisation (`DatasetInfo.mean` / `std`, per channel, 0..255 units): the published
statistics for cifar10, cifar100, imagenet2012 (and its variants), mnist, kmnist and
fashion_mnist, looked up by `config.data.name` for every source (so an npz copy of
CIFAR-10 named 'cifar10' uses the CIFAR-10 values); digits statistics are computed on
its (small) resized train split; anything else uses mean 127.5, std 64 per channel.

TensorFlow and TFDS are imported lazily inside the 'tfds' functions only, so 'digits'
and 'npz' work on machines without TensorFlow.
"""

import concurrent.futures
import dataclasses
import functools
import io
import os
import re
import zipfile
from typing import Any, Sequence

import numpy as np

from eeprune_jax.data import download

# Published per-channel statistics, in 0..255 units.
_KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    'cifar10': ((125.307, 122.961, 113.8575), (62.9932, 62.0887, 66.7048)),
    'cifar100': ((129.3105, 124.1085, 112.4040), (68.1615, 65.3820, 70.4310)),
    'imagenet2012': ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    'mnist': ((33.3184,), (78.5675,)),
    'kmnist': ((48.9090,), (88.8165,)),
    'fashion_mnist': ((72.9400,), (90.0215,)),
}
_DEFAULT_MEAN, _DEFAULT_STD = 127.5, 64.0

# Class names of data sets whose TFDS copy may carry only numbers for them: TFDS reads the
# names from the downloaded archive, so a copy prepared or converted without it (like
# ../shared/data/tfds/cifar10) has '0'..'9'. Standard order: the label index order of
# TFDS, torchvision and Keras (CIFAR-100: the 100 fine labels).
_KNOWN_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    'cifar10': ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                'ship', 'truck'),
    'cifar100': (
        'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle', 'bicycle',
        'bottle', 'bowl', 'boy', 'bridge', 'bus', 'butterfly', 'camel', 'can', 'castle',
        'caterpillar', 'cattle', 'chair', 'chimpanzee', 'clock', 'cloud', 'cockroach', 'couch',
        'crab', 'crocodile', 'cup', 'dinosaur', 'dolphin', 'elephant', 'flatfish', 'forest',
        'fox', 'girl', 'hamster', 'house', 'kangaroo', 'keyboard', 'lamp', 'lawn_mower',
        'leopard', 'lion', 'lizard', 'lobster', 'man', 'maple_tree', 'motorcycle', 'mountain',
        'mouse', 'mushroom', 'oak_tree', 'orange', 'orchid', 'otter', 'palm_tree', 'pear',
        'pickup_truck', 'pine_tree', 'plain', 'plate', 'poppy', 'porcupine', 'possum',
        'rabbit', 'raccoon', 'ray', 'road', 'rocket', 'rose', 'sea', 'seal', 'shark', 'shrew',
        'skunk', 'skyscraper', 'snail', 'snake', 'spider', 'squirrel', 'streetcar',
        'sunflower', 'sweet_pepper', 'table', 'tank', 'telephone', 'television', 'tiger',
        'tractor', 'train', 'trout', 'tulip', 'turtle', 'wardrobe', 'whale', 'willow_tree',
        'wolf', 'woman', 'worm'),
}

_DIGITS_TEST_EVERY = 5


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS data set is not prepared in the data dir and cannot be downloaded here."""


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


def resolve_split(data_config: Any, split: str) -> str:
  """Maps the roles 'train'/'eval' to the configured split names; other names pass."""
  if split == 'train':
    return data_config.train_split
  if split == 'eval':
    return data_config.eval_split
  return split


def _stats(name: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
  key = _base_name(name)
  if key.startswith('imagenet2012'):
    key = 'imagenet2012'
  if key in _KNOWN_STATS and len(_KNOWN_STATS[key][0]) == channels:
    return _KNOWN_STATS[key]
  return (_DEFAULT_MEAN,) * channels, (_DEFAULT_STD,) * channels


def _base_name(name: str) -> str:
  """'cifar10/config:3.0.2' -> 'cifar10'."""
  return name.split(':')[0].split('/')[0]


def named_classes(name: str, names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
  """The class names to show: `names`, unless they are only the indices '0', '1', ...
  and the data set `name` has known names; indices when there are no names at all."""
  indices = tuple(str(i) for i in range(num_classes))
  names = tuple(str(n) for n in names) if names is not None and len(names) else indices
  known = _KNOWN_CLASS_NAMES.get(_base_name(name or ''))
  if names == indices and known is not None and len(known) == num_classes:
    return known
  return names


def _resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear Pillow resize of uint8 [N,H,W,C] to [N,size,size,C] (no-op if same size)."""
  if images.shape[1:3] == (size, size):
    return images
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((images.shape[0], size, size, images.shape[3]), np.uint8)
  for i, img in enumerate(images):
    for c in range(images.shape[3]):  # per channel: Pillow has no mode for e.g. C=2.
      out[i, :, :, c] = np.asarray(
          Image.fromarray(img[:, :, c]).resize((size, size), Image.BILINEAR))
  return out


# ---------------------------------------------------------------------------------------
# split slices (the module docstring states the semantics)

_SPEC_RE = re.compile(r'^(?P<name>[\w-]+)(\[(?P<selector>[^\]]*)\])?$')
_BOUND_RE = re.compile(r'^(?P<value>-?[\d_.]+)(?P<unit>%)?$')


@dataclasses.dataclass(frozen=True)
class SplitSlice:
  """A parsed split spec: the base split name and the slice boundaries as written."""
  name: str
  start: float | None = None  # None = from the beginning
  end: float | None = None  # None = to the end
  percent: bool = False

  def range(self, num_examples: int) -> tuple[int, int]:
    """[start, end) in the whole split's canonical indices, for a split of num_examples."""
    n = num_examples
    bounds = []
    for value, default in ((self.start, 0), (self.end, n)):
      if value is None:
        bounds.append(default)
        continue
      b = int(round(value * n / 100.0)) if self.percent else int(value)
      if abs(b) > n:
        raise ValueError(f'split {self.spec()!r}: boundary {b} is outside the {n} examples '
                         f'of split {self.name!r}.')
      bounds.append(n + b if b < 0 else b)
    start, end = bounds
    if start >= end:
      raise ValueError(f'split {self.spec()!r} selects no example of the {n} in split '
                       f'{self.name!r} (examples [{start}, {end})).')
    return start, end

  def spec(self) -> str:
    """The spec, written back."""
    if self.start is None and self.end is None:
      return self.name
    unit = '%' if self.percent else ''
    fmt = lambda v: '' if v is None else f'{v:g}{unit}'
    return f'{self.name}[{fmt(self.start)}:{fmt(self.end)}]'


def parse_split(spec: str) -> SplitSlice:
  """Parses `name` or `name[from:to]` (see the module docstring); raises ValueError."""
  spec = str(spec).strip()
  help_text = ("write 'train', 'train[:2000]', 'train[2000:]', 'train[:10%]' or "
               "'test[25%:75%]' (one split, a Python-style slice of counts or percentages)")
  if '+' in spec:
    raise ValueError(f'split {spec!r}: compound splits (a+b) are not supported; {help_text}.')
  m = _SPEC_RE.match(spec)
  if not m:
    raise ValueError(f'split {spec!r} is not a split spec: {help_text}.')
  name, selector = m.group('name'), m.group('selector')
  if selector is None:
    return SplitSlice(name)
  parts = selector.split(':')
  if len(parts) != 2 or not any(p.strip() for p in parts):
    raise ValueError(f'split {spec!r} is not a split spec: {help_text}.')
  matches = []
  for part in parts:
    bm = _BOUND_RE.match(part) if part else None
    if part and not bm:
      raise ValueError(f'split {spec!r}: {part!r} is not a count or a percentage; {help_text}.')
    matches.append(bm)
  # As in TFDS, a '%' on either boundary makes both percentages.
  percent = any(bm is not None and bm.group('unit') == '%' for bm in matches)
  values = []
  for part, bm in zip(parts, matches):
    if bm is None:
      values.append(None)
      continue
    try:
      values.append(float(bm.group('value')) if percent else int(bm.group('value')))
    except ValueError:
      raise ValueError(f'split {spec!r}: {part!r} is not a '
                       f'{"number" if percent else "whole number of examples"}; '
                       f'{help_text}.') from None
  return SplitSlice(name, values[0], values[1], percent=percent)


def slice_range(spec: str, base_size) -> tuple[str, int, int]:
  """(base split name, start, end) of a split spec; `base_size(name)` gives split sizes."""
  sl = parse_split(spec)
  start, end = sl.range(base_size(sl.name))
  return sl.name, start, end


# ---------------------------------------------------------------------------------------
# digits


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  d = datasets.load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, d.target.astype(np.int32)


def _digits_base_split(name: str) -> np.ndarray:
  n = _digits_raw()[1].shape[0]
  is_test = np.arange(n) % _DIGITS_TEST_EVERY == 0
  if name == 'train':
    return np.flatnonzero(~is_test)
  if name == 'test':
    return np.flatnonzero(is_test)
  raise ValueError(f"digits has splits 'train' and 'test', not {name!r}.")


def _digits_split(split: str) -> np.ndarray:
  """load_digits positions of a (possibly sliced) split, in canonical order."""
  sl = parse_split(split)
  base = _digits_base_split(sl.name)
  start, end = sl.range(len(base))
  return base[start:end]


@functools.lru_cache(maxsize=8)
def _digits_arrays(split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  images, labels = _digits_raw()
  sel = _digits_split(split)
  out = _resize_uint8(images[sel], image_size), labels[sel]
  for a in out:
    a.flags.writeable = False  # cached: callers must not mutate it.
  return out


# ---------------------------------------------------------------------------------------
# npz


def _npz_keys(path: str) -> list[str]:
  if not path:
    raise ValueError("config.data.source is 'npz' but config.data.npz_path is empty.")
  if not os.path.exists(path):
    raise FileNotFoundError(f'npz file {path!r} (config.data.npz_path) does not exist.')
  with np.load(path, allow_pickle=False) as f:
    return list(f.files)


def _npz_layout(path: str, split: str) -> tuple[str, str]:
  """Returns ('raw', images_key) or ('jpeg', prefix) for a split of an npz file."""
  keys = _npz_keys(path)
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


def _npz_labels_key(path: str, split: str, images_key: str) -> str:
  key = 'labels' if images_key == 'images' else f'{split}_labels'
  if key not in _npz_keys(path):
    raise KeyError(f'npz file {path!r} has {images_key!r} but no key {key!r}.')
  return key


def _npy_member_shape(path: str, key: str) -> tuple[int, ...]:
  """Shape of one array of an .npz, read from its header only (no data load)."""
  with zipfile.ZipFile(path) as z, z.open(key + '.npy') as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, _ = np.lib.format.read_array_header_1_0(f)
    else:
      shape, _, _ = np.lib.format.read_array_header_2_0(f)
  return tuple(shape)


def _decode_jpeg(data: np.ndarray) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = np.asarray(Image.open(io.BytesIO(data.tobytes())))
  return img[..., None] if img.ndim == 2 else img


def _decode_jpegs(data: np.ndarray, offsets: np.ndarray, start: int, end: int) -> np.ndarray:
  """Decodes JPEG files start..end-1 of a concatenation in parallel threads (Pillow
  releases the GIL while it decodes)."""
  def decode(rows: range) -> list[np.ndarray]:
    return [_decode_jpeg(data[offsets[i]:offsets[i + 1]]) for i in rows]
  chunk = 1024  # images per task: few tasks, little scheduling overhead
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    parts = pool.map(decode, (range(s, min(s + chunk, end)) for s in range(start, end, chunk)))
    return np.stack([img for part in parts for img in part])
def _npz_base_count(path: str, name: str) -> int:
  """Number of examples of an unsliced split of an npz file (headers only for raw arrays)."""
  layout, key = _npz_layout(path, name)
  if layout == 'raw':
    return _npy_member_shape(path, key)[0]
  return _npy_member_shape(path, f'{name}_offsets')[0] - 1


def _npz_slice(path: str, split: str) -> tuple[str, int, int]:
  """(base split name, start, end) of a possibly sliced split spec of an npz file."""
  return slice_range(split, lambda name: _npz_base_count(path, name))


def _npz_arrays(path: str, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  name, start, end = _npz_slice(path, split)
  layout, key = _npz_layout(path, name)
  with np.load(path, allow_pickle=False) as f:
    if layout == 'raw':
      images = f[key]
      labels = f[_npz_labels_key(path, name, key)]
      if images.ndim == 3:
        images = images[..., None]
      if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f'npz file {path!r}: {key!r} must be uint8 [N,H,W] or [N,H,W,C], '
                         f'got {images.dtype} {images.shape}.')
      if images.shape[0] != labels.shape[0]:
        raise ValueError(f'npz file {path!r}, split {name!r}: {images.shape[0]} images but '
                         f'{labels.shape[0]} labels.')
      images, labels = images[start:end], labels[start:end]
    else:
      data, offsets = f[f'{name}_jpeg'], f[f'{name}_offsets']
      labels = f[f'{name}_labels']
      if len(offsets) - 1 != labels.shape[0]:
        raise ValueError(f'npz file {path!r}, split {name!r}: {len(offsets) - 1} images but '
                         f'{labels.shape[0]} labels.')
      labels = labels[start:end]
      images = _decode_jpegs(data, offsets, start, end)
  return _resize_uint8(images, image_size), labels.astype(np.int32)


def _npz_count_and_channels(path: str, split: str) -> tuple[int, int]:
  name, start, end = _npz_slice(path, split)
  layout, key = _npz_layout(path, name)
  if layout == 'raw':
    shape = _npy_member_shape(path, key)
    return end - start, (shape[3] if len(shape) == 4 else 1)
  with np.load(path, allow_pickle=False) as f:
    offsets = f[f'{name}_offsets']
    first = _decode_jpeg(f[f'{name}_jpeg'][offsets[0]:offsets[1]])
  return end - start, first.shape[-1]


def _npz_labels(path: str, split: str) -> np.ndarray:
  name, start, end = _npz_slice(path, split)
  layout, key = _npz_layout(path, name)
  lkey = _npz_labels_key(path, name, key) if layout == 'raw' else f'{name}_labels'
  with np.load(path, allow_pickle=False) as f:
    return f[lkey][start:end].astype(np.int32)


# ---------------------------------------------------------------------------------------
# tfds


def _tfds_data_dir(data_config: Any) -> str | None:
  return data_config.data_dir or None


def tfds_builder(data_config: Any) -> Any:
  """The TFDS builder of `config.data.name`; fails fast if it is not prepared locally."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = data_config.name
  if not name:
    raise ValueError("config.data.source is 'tfds' but config.data.name is empty "
                     "(e.g. 'cifar10').")
  data_dir = _tfds_data_dir(data_config)
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  shown = data_dir or 'the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)'
  manual = download.needs_manual_files(builder)
  reason = 'data.download=False'
  if data_config.get('download', True) and not manual:
    try:
      download.download_and_prepare(builder)
      return builder
    except download.DownloadUnavailableError as e:
      reason = f'downloading it failed: {e}'
  if manual:
    raise DatasetNotPreparedError(
        f'TFDS data set {name!r} is not prepared in data dir {shown!r} and its files must be '
        f'downloaded by hand: put them in {download.manual_dir(builder)!r} (what it needs: '
        f'`tfds build {name} --manual_dir=...` prints the instructions), then run again; '
        f'TFDS prepares it from there.')
  raise DatasetNotPreparedError(
      f'TFDS data set {name!r} is not prepared in data dir {shown!r} (looked for '
      f'{os.fspath(builder.data_dir)!r}) and {reason}. Remedy: on a machine with network '
      f'run `tfds build {name} --data_dir=<dir>` (manual-download data sets such as '
      f'imagenet2012 need their files in <dir>/downloads/manual), then copy the prepared '
      f'{name}/<version> folder into the data dir, or set config.data.data_dir to a '
      f'directory that holds it.')
  return builder


class UnknownDatasetError(ValueError):
  """`config.data.name` is not a data set TFDS knows."""


def tfds_registered_metadata(data_config: Any) -> tuple[int, int, tuple[str, ...]]:
  """(num_classes, channels, class names) of a TFDS data set from its registered metadata.

  Needs no prepared data and no network: TFDS knows the features of every registered data
  set from its code (and from the prepared copy's metadata where there is one).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = data_config.name
  if not name:
    raise ValueError("config.data.source is 'tfds' but config.data.name is empty "
                     "(e.g. 'cifar10').")
  try:
    builder = tfds.builder(name, data_dir=_tfds_data_dir(data_config))
  except tfds.core.DatasetNotFoundError:
    raise UnknownDatasetError(
        f'config.data.name={name!r} is not a TFDS data set registered in tensorflow_datasets '
        f'{tfds.__version__}: check the spelling (e.g. cifar10, cifar100, imagenet2012, '
        f'kmnist; `tfds.list_builders()` lists them all).') from None
  except (ValueError, AssertionError) as e:  # a bad config or version of a known data set
    raise UnknownDatasetError(f'config.data.name={name!r}: {str(e).splitlines()[0]}') from None
  feats = builder.info.features
  if 'image' not in feats or 'label' not in feats or not hasattr(feats['label'], 'num_classes'):
    raise ValueError(f'TFDS data set {name!r} is not an image classification data set (it '
                     f'needs features image and label; it has {list(feats.keys())}).')
  label = feats['label']
  channels = feats['image'].shape[-1] or 3
  return label.num_classes, channels, named_classes(name, label.names, label.num_classes)


def class_metadata(data_config: Any) -> tuple[int, int, tuple[str, ...]]:
  """(num_classes, channels, class names) of the configured data set, as cheaply as
  possible: for 'tfds' from the registered metadata, so the data need not be prepared."""
  if data_config.source == 'tfds':
    return tfds_registered_metadata(data_config)
  info = dataset_info(data_config)
  return info.num_classes, info.image_shape[-1], info.class_names


def _tfds_abs_range(builder: Any, split: str) -> tuple[str, int, int]:
  """(base split name, start, end) of a possibly sliced split spec, absolute indices."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  splits = builder.info.splits
  try:
    instrs = tfds.core.ReadInstruction.from_spec(split).to_absolute(splits)
  except (KeyError, ValueError, AssertionError) as e:
    raise ValueError(f'TFDS data set {builder.name!r} has no split {split!r} '
                     f'(splits: {sorted(splits.keys())}): {e}') from e
  if len(instrs) != 1:
    raise ValueError(f'split {split!r} of {builder.name!r}: compound splits (a+b) are not '
                     'supported; use one (possibly sliced) split.')
  ins = instrs[0]
  total = splits[ins.splitname].num_examples
  start = 0 if ins.from_ is None else ins.from_
  end = total if ins.to is None else ins.to
  if start >= end:
    raise ValueError(f'split {split!r} selects no example of the {total} in split '
                     f'{ins.splitname!r} of {builder.name!r} (examples [{start}, {end})).')
  return ins.splitname, start, end


def tfds_num_examples(data_config: Any, split: str) -> int:
  """Number of examples of a (possibly sliced) TFDS split, from metadata only."""
  _, start, end = _tfds_abs_range(tfds_builder(data_config), resolve_split(data_config, split))
  return end - start


def tfds_encoded_dataset(data_config: Any, split: str, start: int = 0,
                         end: int | None = None) -> Any:
  """Examples [start, end) of a split in canonical order as (encoded image, int64 label).

  Images stay encoded (cheap to filter and shuffle); decode with `tfds_decode_fn`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds_builder(data_config)
  base, s0, s1 = _tfds_abs_range(builder, resolve_split(data_config, split))
  end = s1 - s0 if end is None else end
  if not 0 <= start <= end <= s1 - s0:
    raise ValueError(f'range [{start}, {end}) outside split {split!r} of size {s1 - s0}.')
  read_config = tfds.ReadConfig(interleave_cycle_length=1, shuffle_seed=None)
  ds = builder.as_dataset(split=f'{base}[{s0 + start}:{s0 + end}]', shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()},
                          read_config=read_config)
  # take(): sources that yield more than the metadata says (tfds.testing.mock_data)
  # would otherwise break the index arithmetic.
  return ds.take(end - start).map(lambda ex: (ex['image'], ex['label']))


def tfds_decode_fn(data_config: Any) -> Any:
  """A TF function: encoded image bytes -> uint8 [H, W, C] at the stored size."""
  feature = tfds_builder(data_config).info.features['image']
  return feature.decode_example


def tfds_image_format(data_config: Any) -> str | None:
  """How a TFDS data set stores its images ('jpeg', 'png', or None: TFDS's default)."""
  return tfds_builder(data_config).info.features['image'].encoding_format


def tf_resize_uint8(image: Any, size: int) -> Any:
  """TF bilinear (antialiased) resize of uint8 [H,W,C] to [size,size,C]; no-op if equal."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape = image.shape
  if shape[0] == size and shape[1] == size:
    return image
  out = tf.image.resize(image, (size, size), method='bilinear', antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def _tfds_arrays(data_config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  decode = tfds_decode_fn(data_config)
  size = data_config.image_size
  ds = tfds_encoded_dataset(data_config, split).map(
      lambda img, lab: (tf_resize_uint8(decode(img), size), tf.cast(lab, tf.int32)),
      num_parallel_calls=tf.data.AUTOTUNE).batch(1024)
  images, labels = [], []
  for im, lab in ds.as_numpy_iterator():
    images.append(im)
    labels.append(lab)
  if not images:
    raise ValueError(f'split {split!r} of {data_config.name!r} is empty.')
  return np.concatenate(images), np.concatenate(labels)


def tfds_labels(data_config: Any, split: str) -> np.ndarray:
  """Labels of a TFDS split in canonical order (reads the records, not the pixels)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = tfds_encoded_dataset(data_config, split).map(
      lambda img, lab: tf.cast(lab, tf.int32)).batch(8192)
  parts = list(ds.as_numpy_iterator())
  return np.concatenate(parts) if parts else np.zeros((0,), np.int32)


_TFDS_ID_RE = re.compile(rb'-(\d+)-of-\d+__(\d+)$')


def tfds_labels_parallel(data_config: Any, split: str, start: int = 0,
                         end: int | None = None) -> np.ndarray:
  """Labels int32 of examples [start, end) of a TFDS split in canonical order, read with
  interleaved parallel shard reads, images left encoded; each record's place comes from
  its tfds_id (shard file number and record number within the file)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds_builder(data_config)
  base, s0, s1 = _tfds_abs_range(builder, resolve_split(data_config, split))
  end = s1 - s0 if end is None else end
  if not 0 <= start <= end <= s1 - s0:
    raise ValueError(f'range [{start}, {end}) outside split {split!r} of size {s1 - s0}.')
  shard_starts = np.concatenate([[0], np.cumsum(builder.info.splits[base].shard_lengths)])
  read_config = tfds.ReadConfig(add_tfds_id=True, interleave_cycle_length=16,
                                num_parallel_calls_for_interleave_files=tf.data.AUTOTUNE,
                                shuffle_seed=None)
  ds = builder.as_dataset(split=f'{base}[{s0 + start}:{s0 + end}]', shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()},
                          read_config=read_config)
  ds = ds.map(lambda ex: (ex['tfds_id'], tf.cast(ex['label'], tf.int32)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).batch(8192)
  labels = np.full(end - start, -1, np.int32)
  for ids, batch in ds.as_numpy_iterator():
    parsed = np.array([_TFDS_ID_RE.search(i).groups() for i in ids], np.int64).reshape(-1, 2)
    index = shard_starts[parsed[:, 0]] + parsed[:, 1] - s0 - start
    ok = (index >= 0) & (index < end - start)  # a mock may ignore the slice
    labels[index[ok]] = batch[ok]
  if (labels < 0).any():
    raise ValueError(f'split {split!r} of {data_config.name!r}: read no label for '
                     f'{int((labels < 0).sum())} of examples [{start}, {end}); the shard '
                     'files do not match the metadata (shard_lengths): prepare it again.')
  return labels


# ---------------------------------------------------------------------------------------
# public API


def load_arrays(data_config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N,S,S,C] (S = image_size) and labels int32 [N] in canonical order."""
  split = resolve_split(data_config, split)
  source = data_config.source
  if source == 'digits':
    images, labels = _digits_arrays(split, data_config.image_size)
    return images.copy(), labels.copy()
  if source == 'npz':
    return _npz_arrays(data_config.npz_path, split, data_config.image_size)
  if source == 'tfds':
    return _tfds_arrays(data_config, split)
  raise ValueError(f"unknown config.data.source {source!r}: 'tfds', 'digits' or 'npz'.")


def load_images(data_config: Any, split: str, indices: Sequence[int]) -> np.ndarray:
  """Images uint8 [len(indices),S,S,C] of the given canonical indices of a split, reading
  (for TFDS: one record each; for JPEG npz files: decoding) only those."""
  indices = [int(i) for i in indices]
  split = resolve_split(data_config, split)
  source, size = data_config.source, data_config.image_size
  if not indices:
    return np.zeros((0, size, size, dataset_info(data_config).image_shape[-1]), np.uint8)
  if source == 'digits':
    return _digits_arrays(split, size)[0][indices].copy()
  if source == 'npz':
    path = data_config.npz_path
    name, start, _ = _npz_slice(path, split)
    layout, key = _npz_layout(path, name)
    with np.load(path, allow_pickle=False) as f:
      if layout == 'raw':
        images = f[key][[start + i for i in indices]]
        images = images[..., None] if images.ndim == 3 else images
      else:
        data, offsets = f[f'{name}_jpeg'], f[f'{name}_offsets']
        images = np.stack([_decode_jpeg(data[offsets[start + i]:offsets[start + i + 1]])
                           for i in indices])
    return _resize_uint8(images, size)
  if source == 'tfds':
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    decode = tfds_decode_fn(data_config)
    out = []
    for i in indices:  # a one-record slice: TFDS reads from the shard that holds it
      for image, _ in tfds_encoded_dataset(data_config, split, i, i + 1):
        out.append(tf_resize_uint8(decode(image), size).numpy())
    return np.stack(out)
  raise ValueError(f"unknown config.data.source {source!r}: 'tfds', 'digits' or 'npz'.")


def load_labels(data_config: Any, split: str) -> np.ndarray:
  """Labels int32 [N] of a split in canonical order, without decoding images."""
  split = resolve_split(data_config, split)
  source = data_config.source
  if source == 'digits':
    return _digits_raw()[1][_digits_split(split)].copy()
  if source == 'npz':
    return _npz_labels(data_config.npz_path, split)
  if source == 'tfds':
    return tfds_labels(data_config, split)
  raise ValueError(f"unknown config.data.source {source!r}: 'tfds', 'digits' or 'npz'.")


def num_examples(data_config: Any, split: str) -> int:
  """Number of examples of a split (cheap)."""
  split = resolve_split(data_config, split)
  if data_config.source == 'digits':
    return len(_digits_split(split))
  if data_config.source == 'npz':
    return _npz_count_and_channels(data_config.npz_path, split)[0]
  if data_config.source == 'tfds':
    return tfds_num_examples(data_config, split)
  raise ValueError(f'unknown config.data.source {data_config.source!r}.')


def _info_key(data_config: Any) -> tuple[Any, ...]:
  return tuple(data_config.get(k) for k in (
      'source', 'name', 'data_dir', 'npz_path', 'train_split', 'eval_split', 'image_size'))


_INFO_CACHE: dict[tuple[Any, ...], DatasetInfo] = {}


def dataset_info(data_config: Any) -> DatasetInfo:
  """Metadata of the configured data set; cheap (no full data load), cached per config."""
  key = _info_key(data_config)
  if key not in _INFO_CACHE:
    _INFO_CACHE[key] = _dataset_info(data_config)
  return _INFO_CACHE[key]


def _dataset_info(data_config: Any) -> DatasetInfo:
  source, size = data_config.source, data_config.image_size
  train_split, eval_split = data_config.train_split, data_config.eval_split
  if source == 'digits':
    images, _ = _digits_arrays(train_split, size)
    x = images.astype(np.float64)
    return DatasetInfo(
        name=data_config.name or 'digits', source=source, num_classes=10,
        num_train=len(_digits_split(train_split)), num_eval=len(_digits_split(eval_split)),
        image_shape=(size, size, 1), class_names=tuple(str(i) for i in range(10)),
        mean=(float(x.mean()),), std=(float(x.std()),))
  if source == 'npz':
    path = data_config.npz_path
    num_train, channels = _npz_count_and_channels(path, train_split)
    num_eval, _ = _npz_count_and_channels(path, eval_split)
    with np.load(path, allow_pickle=False) as f:
      class_names = (tuple(str(c) for c in f['class_names'])
                     if 'class_names' in f.files else None)
    name = data_config.name or os.path.splitext(os.path.basename(path))[0]
    if class_names is None:
      # Classes counted on the whole train split, so a slice that misses a class keeps it.
      whole_train = parse_split(train_split).name
      num_classes = int(_npz_labels(path, whole_train).max()) + 1
      class_names = named_classes(name, None, num_classes)
    mean, std = _stats(name, channels)
    return DatasetInfo(
        name=name, source=source, num_classes=len(class_names), num_train=num_train,
        num_eval=num_eval, image_shape=(size, size, channels), class_names=class_names,
        mean=mean, std=std)
  if source == 'tfds':
    builder = tfds_builder(data_config)
    feats = builder.info.features
    if 'image' not in feats or 'label' not in feats:
      raise ValueError(f'TFDS data set {data_config.name!r} has no image/label features '
                       f'({list(feats.keys())}).')
    channels = feats['image'].shape[-1] or 3
    label = feats['label']
    class_names = named_classes(data_config.name, label.names, label.num_classes)
    mean, std = _stats(data_config.name, channels)
    _, s0, s1 = _tfds_abs_range(builder, train_split)
    _, e0, e1 = _tfds_abs_range(builder, eval_split)
    return DatasetInfo(
        name=data_config.name, source=source, num_classes=label.num_classes,
        num_train=s1 - s0, num_eval=e1 - e0, image_shape=(size, size, channels),
        class_names=class_names, mean=mean, std=std)
  raise ValueError(f"unknown config.data.source {source!r}: 'tfds', 'digits' or 'npz'.")


def process_range(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """The contiguous [start, end) share of n examples read by one process (balanced)."""
  return n * process_index // process_count, n * (process_index + 1) // process_count


def ceil_div(a: int, b: int) -> int:
  """ceil(a / b) for non-negative ints."""
  return -(-a // b)


__all__: Sequence[str] = (
    'DatasetInfo', 'DatasetNotPreparedError', 'UnknownDatasetError', 'class_metadata',
    'dataset_info', 'load_arrays', 'load_labels', 'named_classes', 'num_examples',
    'parse_split', 'process_range', 'resolve_split', 'slice_range')
