"""A CPU-sized CIFAR-10 experiment: half-width ResNet-20 (CIFAR form), mid exit, 50% pruned.

  python -m eeprune_jax.main --config=configs/cifar10_small.py --workdir=runs/c10_eeprune \
      --config.data.data_dir=../shared/data/tfds

The setting of docs/results.md: small enough for a 2-core CPU. Expected runtime: about
1.5 minutes per full-data epoch on a 2-core CPU (8 epochs, pruned after 2); seconds per
epoch on a GPU.
"""

from eeprune_jax import config_base


def get_config():
  """CIFAR-10 / ResNet-20 config."""
  config = config_base.base_config()
  config.data.source = 'tfds'
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.data.augment = 'cifar'
  config.data.backend = 'device'
  config.model.name = 'resnet20'
  config.model.stem = 'cifar'
  config.model.width = 0.5
  config.model.exits = 'mid'
  config.train.num_epochs = 8
  config.train.batch_size = 128
  config.train.eval_batch_size = 1000  # a multiple of 8: valid on a TPU v3-8 or 8 GPUs too
  config.train.learning_rate = 0.1
  config.train.weight_decay = 5e-4
  config.train.warmup_epochs = 1.0
  config.train.log_every_steps = 50
  config.prune.fraction = 0.5
  config.prune.epoch = 2
  config.prune.class_balanced = False  # the paper's rule, as measured in docs/results.md
  return config
