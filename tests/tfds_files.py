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


def write_prepared(data_dir: str | os.PathLike, name: str, split_sizes: Mapping[str, int], *,
                   image_shape: tuple[int, int, int], classes: int = 2, shards: int = 2,
                   file_format: str = 'tfrecord', seed: int = 0) -> None:
  """Writes TFDS data set `name` (features image + label, as registered) prepared in
  `data_dir`, every split cut into `shards` files of near-equal length.

  Labels are drawn from the first `classes` classes and each image is its class's grey
  level plus noise, so a network learns them within an epoch and pruning rounds find
  eligible examples. Other features of the data set get zeros / empty strings.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core import file_adapters  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=os.fspath(data_dir))
  builder.data_path.mkdir(parents=True)
  features = builder.info.features
  fmt = file_adapters.FileFormat(file_format)
  adapter = file_adapters.ADAPTER_FOR_FORMAT[fmt]
  template = tfds.core.ShardedFileTemplate(
      data_dir=builder.data_path, dataset_name=name, filetype_suffix=fmt.file_suffix)
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

  infos = []
  for split, n in split_sizes.items():
    lengths = [n * (k + 1) // shards - n * k // shards for k in range(shards)]
    split_template = template.replace(split=split)
    for path, length in zip(split_template.sharded_filepaths(shards), lengths):
      adapter.write_examples(path, [(None, features.serialize_example(example()))
                                    for _ in range(length)])
    infos.append(tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=0,
                                     filename_template=split_template))
  builder.info.set_file_format(fmt)
  builder.info.set_splits(tfds.core.SplitDict(infos))
  builder.info.write_to_directory(builder.data_path)
