"""EEPrune on Kuzushiji-MNIST with a CIFAR-form ResNet-18 (28x28 images padded to 32).

  python -m eeprune_jax.main --config=configs/kmnist.py --workdir=$HOME/runs/kmnist

Needs the TFDS `kmnist` prepared in data.data_dir. Expected runtime: a few minutes on one
GPU (30 epochs); about 2 h on a 2-core CPU.
"""

from eeprune_jax import config_base


def get_config():
  """KMNIST / ResNet-18 config."""
  config = config_base.base_config()
  config.data.source = 'tfds'
  config.data.name = 'kmnist'
  config.data.image_size = 32
  config.data.augment = 'none'  # flips would change the characters
  config.data.backend = 'device'
  config.model.name = 'resnet18'
  config.model.stem = 'cifar'
  config.model.exits = 'mid'
  config.train.num_epochs = 30
  config.train.batch_size = 128
  config.train.eval_batch_size = 1000
  config.train.learning_rate = 0.05
  config.train.warmup_epochs = 1.0
  config.prune.fraction = 0.5
  config.prune.epoch = 5
  return config
