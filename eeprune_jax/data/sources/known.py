"""What is known about named data sets, whatever source holds them: their published
normalisation statistics and their class names.

Statistics (`stats`, per channel, 0..255 units): the published values for cifar10,
cifar100, imagenet2012 (and its variants), mnist, kmnist and fashion_mnist, looked up by
`config.data.name` for every source (so an npz copy of CIFAR-10 named 'cifar10' uses the
CIFAR-10 values); anything else gets mean 127.5, std 64 per channel (digits computes its
own: `sources.digits`).
"""

from typing import Sequence

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


def base_name(name: str) -> str:
  """'cifar10/config:3.0.2' -> 'cifar10'."""
  return name.split(':')[0].split('/')[0]


def stats(name: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) per channel of data set `name`: published values or the defaults."""
  key = base_name(name)
  if key.startswith('imagenet2012'):
    key = 'imagenet2012'
  if key in _KNOWN_STATS and len(_KNOWN_STATS[key][0]) == channels:
    return _KNOWN_STATS[key]
  return (_DEFAULT_MEAN,) * channels, (_DEFAULT_STD,) * channels


def named_classes(name: str, names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
  """The class names to show: `names`, unless they are only the indices '0', '1', ...
  and the data set `name` has known names; indices when there are no names at all."""
  indices = tuple(str(i) for i in range(num_classes))
  names = tuple(str(n) for n in names) if names is not None and len(names) else indices
  known = _KNOWN_CLASS_NAMES.get(base_name(name or ''))
  if names == indices and known is not None and len(known) == num_classes:
    return known
  return names
