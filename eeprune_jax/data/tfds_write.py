"""Writes a prepared TFDS data set from examples: TFRecord and/or ArrayRecord shards.

For tests and benchmarks (a registered data set such as 'imagenet2012' or 'cifar100' with
made-up contents, readable by `tfds.builder(name, data_dir=...)` exactly as a prepared
copy) and for users who convert their own images. With both formats the first is the
data set's `file_format` and the second an alternative format, as `tfds convert_format`
leaves a data set: `as_dataset` (tf.data backend) reads TFRecord, `as_data_source` (grain
backend) reads ArrayRecord.
"""

from typing import Any, Iterable, Mapping, Sequence


def write_prepared(data_dir: str, name: str, splits: Mapping[str, Iterable[dict[str, Any]]],
                   *, file_formats: Sequence[str] = ('tfrecord', 'array_record'),
                   num_shards: int = 1) -> Any:
  """Writes `splits` (split name -> examples as dicts of the data set's features) of the
  registered TFDS data set `name` into `data_dir`; returns the builder reading it.

  Examples are serialised once and written in order, spread over `num_shards` contiguous
  shards, so example k of a split has canonical index k.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir, file_format=file_formats[0])
  builder.data_path.mkdir(parents=True, exist_ok=True)
  features = builder.info.features
  split_infos = []
  for split, examples in splits.items():
    records = [features.serialize_example(ex) for ex in examples]
    bounds = [len(records) * s // num_shards for s in range(num_shards + 1)]
    for fmt in file_formats:
      template = tfds.core.ShardedFileTemplate(
          data_dir=builder.data_path, dataset_name=builder.name, split=split,
          filetype_suffix=fmt)
      for shard, path in enumerate(template.sharded_filepaths(num_shards)):
        _write_records(fmt, str(path), records[bounds[shard]:bounds[shard + 1]])
      if fmt == file_formats[0]:
        split_infos.append(tfds.core.SplitInfo(
            name=split, shard_lengths=[bounds[s + 1] - bounds[s] for s in range(num_shards)],
            num_bytes=sum(len(r) for r in records), filename_template=template))
  builder.info.set_splits(tfds.core.SplitDict(split_infos))
  for fmt in file_formats[1:]:
    builder.info.add_alternative_file_format(fmt)
  builder.info.write_to_directory(builder.data_path)
  return tfds.builder(name, data_dir=data_dir)


def _write_records(file_format: str, path: str, records: Sequence[bytes]) -> None:
  if file_format == 'tfrecord':
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.TFRecordWriter(path) as writer:
      for record in records:
        writer.write(record)
  elif file_format == 'array_record':
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    # group_size:1: every record its own chunk, so a random read decompresses only it.
    writer = array_record_module.ArrayRecordWriter(path, 'group_size:1')
    for record in records:
      writer.write(record)
    writer.close()
  else:
    raise ValueError(f"file format {file_format!r}: 'tfrecord' or 'array_record'.")
