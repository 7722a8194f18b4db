"""Prepared TFDS data sets written as real files, for tests that run whole trainings.

Why not `tfds.testing.mock_data`: it replaces `builder.as_dataset`, and each call runs the
real one inside `tfds.testing.MockFs`, which patches `epath.Path` and `tf.io.gfile` for the
whole process (every thread) and redirects absolute paths into a temporary directory. A run
that checkpoints asynchronously (Orbax writes through epath in background threads) and
builds a tf.data pipeline meanwhile has part of its checkpoint written into that temporary
directory, and the save fails ("No ArrayMetadata found ... 8.orbax-checkpoint-tmp/state...",
"Checkpoint directory does not exist: .../examples..."). So runs that checkpoint read data
written here: random examples serialized with the data set's own features into shard files
plus metadata, as `tfds build` would leave them; TFDS reads them unpatched.
"""

import os
from typing import Mapping

import numpy as np

from eeprune_jax.data import tfds_write


def write_prepared(data_dir: str | os.PathLike, name: str, split_sizes: Mapping[str, int], *,
                   image_shape: tuple[int, int, int], classes: int = 2, shards: int = 2,
                   seed: int = 0) -> None:
  """Writes TFDS data set `name` (features image + label, as registered) prepared in
  `data_dir` in TFRecord (tf.data) and ArrayRecord (grain), every split cut into `shards`
  files of near-equal length.

  Labels are drawn from the first `classes` classes and each image is its class's grey
  level plus noise, so a network learns them within an epoch and pruning rounds find
  eligible examples. Other features of the data set get zeros / empty strings.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = tfds.builder(name, data_dir=os.fspath(data_dir)).info.features
  rng = np.random.default_rng(seed)
  levels = np.linspace(40, 215, classes)

  def example() -> dict[str, object]:
    label = int(rng.integers(classes))
    noise = rng.normal(0, 20, image_shape)
    ex = {'image': np.clip(levels[label] + noise, 0, 255).astype(np.uint8), 'label': label}
    for key, feature in features.items():
      if key not in ex:  # e.g. imagenet2012's file_name, cifar100's coarse_label
        dtype = feature.np_dtype
        ex[key] = '' if dtype == np.object_ else np.zeros(feature.shape, dtype)
    return ex

  tfds_write.write_prepared(os.fspath(data_dir), name,
                            {split: [example() for _ in range(n)]
                             for split, n in split_sizes.items()}, num_shards=shards)
