"""Prints a model's size and cost as one JSON object, without building data or training.

  python -m eeprune_jax.summary --config=configs/demo.py [--config.model.name=resnet50]

A TFDS data set (`--config.data.source=tfds`) need not be prepared: the class count and
channels come from TFDS's registered metadata. `--num_classes` overrides the class count.

Keys: model, stem, width, exits, exit_head, image_shape, num_classes, exit_blocks,
num_blocks, params, exit_head_params (per exit, shallow to deep), macs_per_exit (MACs
per example up to and including each exit), final_macs (the plain network's final
classifier path) and forward_macs (one forward pass with every exit head).
"""

import json
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags

from eeprune_jax import config_checks
from eeprune_jax import models

FLAGS = flags.FLAGS


def _data_shape(config: ml_collections.ConfigDict, num_classes: int) -> tuple[int, tuple]:
  """(num_classes, image shape) from the data set's cheap metadata.

  A TFDS data set needs no prepared data: its registered metadata knows the class count.
  With `num_classes` given, a data set whose metadata cannot be read is no error: the
  image gets 3 channels (the data module only tells us the channel count).
  """
  size = config.data.image_size
  try:
    from eeprune_jax.data import sources  # pylint: disable=g-import-not-at-top
    classes, channels, _ = sources.class_metadata(config.data)
  except Exception as e:  # pylint: disable=broad-except
    if not num_classes:
      raise
    logging.warning('no data set metadata (%s); assuming 3 channels.', e)
    return num_classes, (size, size, 3)
  return num_classes or classes, (size, size, channels)


def describe(config: ml_collections.ConfigDict, num_classes: int = 0) -> dict[str, Any]:
  """The summary of `config.model` on `config.data` as a JSON-ready dict."""
  config_checks.validate_model(config.model)
  num_classes, image_shape = _data_shape(config, num_classes)
  model = models.build_model(config.model, num_classes)
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  macs = models.count_macs(model, image_shape)
  return {
      'model': config.model.name,
      'stem': config.model.stem,
      'width': config.model.width,
      'exits': config.model.exits,
      'exit_head': config.model.exit_head,
      'image_shape': list(image_shape),
      'num_classes': num_classes,
      'num_blocks': models.num_blocks(config.model),
      'exit_blocks': list(models.exit_blocks(config.model)),
      'params': models.param_count(variables['params']),
      'exit_head_params': models.exit_head_param_counts(variables['params']),
      'macs_per_exit': macs[:-1],
      'final_macs': macs[-1],
      'forward_macs': models.forward_macs(model, image_shape),
  }


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from eeprune_jax.data import sources  # pylint: disable=g-import-not-at-top
  try:
    out = describe(FLAGS.config, FLAGS.num_classes)
  except (sources.UnknownDatasetError, sources.DatasetNotPreparedError) as e:
    raise app.UsageError(str(e)) from None
  print(json.dumps(out))


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing this module is safe)."""
  config_flags.DEFINE_config_file('config', None, 'The config file.')
  flags.DEFINE_integer('num_classes', 0, 'Number of classes; 0 = ask the configured data set.')
  flags.mark_flags_as_required(['config'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
