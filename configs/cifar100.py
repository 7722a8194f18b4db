"""EEPrune on CIFAR-100 with MobileNetV3-Large (CIFAR form), mid exit, 40% pruned.

  python -m eeprune_jax.main --config=configs/cifar100.py --workdir=$HOME/runs/cifar100 \
      --config.data.data_dir=gs://BUCKET/tensorflow_datasets

The setting of the paper's MobileNetV3-Large / CIFAR-100 experiment. Needs the TFDS
`cifar100` prepared in data.data_dir. Expected runtime: about 1 h on one H100/H200-class GPU
or a v4-8 TPU VM (200 epochs, ~60% of them on the pruned set); days on a CPU.
"""

from eeprune_jax import config_base


def get_config():
  """CIFAR-100 / MobileNetV3-Large config."""
  config = config_base.base_config()
  config.data.source = 'tfds'
  config.data.name = 'cifar100'
  config.data.image_size = 32
  config.data.augment = 'cifar'
  config.data.backend = 'device'
  config.model.name = 'mobilenet_v3_large'
  config.model.stem = 'cifar'
  config.model.exits = 'mid'
  config.train.num_epochs = 200
  config.train.batch_size = 128
  config.train.eval_batch_size = 1000
  config.train.learning_rate = 0.1
  config.train.weight_decay = 5e-4
  config.train.warmup_epochs = 5.0
  config.train.log_every_steps = 100
  config.train.checkpoint_every_epochs = 5
  config.prune.fraction = 0.4
  config.prune.epoch = 20
  config.prune.class_balanced = False  # the paper's rule
  return config
