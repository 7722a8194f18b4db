"""A run of a few seconds per epoch for tests: narrow ResNet-20 on 16x16 digits.

  python -m eeprune_jax.main --config=tests/tiny_config.py --workdir=/tmp/tiny
"""

from eeprune_jax import config_base


def get_config():
  """Tiny test config."""
  config = config_base.base_config()
  config.data.image_size = 16
  config.model.name = 'resnet20'
  config.model.width = 0.5
  config.model.exits = 'mid'
  config.train.num_epochs = 3
  config.train.batch_size = 64
  config.train.eval_batch_size = 128
  config.train.learning_rate = 0.05
  config.train.warmup_epochs = 0.5
  config.train.log_every_steps = 5
  config.train.progress_bar = False
  config.prune.fraction = 0.3
  config.prune.epoch = 1
  # The paper's rule. With class quotas the mask also depends on confidence rankings at
  # each class's cutoff, where float-level differences between device counts (reduction
  # order) can swap a few examples; the cross-device tests compare exact masks.
  config.prune.class_balanced = False
  return config
