"""EEPrune on CIFAR-10 with ResNet-50 (CIFAR form), mid exit, 50% pruned.

  python -m eeprune_jax.main --config=configs/cifar10.py --workdir=$HOME/runs/cifar10 \
      --config.data.data_dir=/path/to/tensorflow_datasets

The setting of the paper's ResNet-50 / CIFAR-10 experiment. Needs the TFDS `cifar10`
prepared in data.data_dir. Expected runtime: about 1.5 h on one H100/H200-class GPU
(200 epochs); days on a CPU. Without TensorFlow (a GPU box with JAX only) use the JPEG
copy: --config.data.source=npz --config.data.npz_path=.../cifar10_jpeg.npz.
"""

from eeprune_jax import config_base


def get_config():
  """CIFAR-10 / ResNet-50 config."""
  config = config_base.base_config()
  config.data.source = 'tfds'
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.data.augment = 'cifar'
  config.data.backend = 'device'
  config.model.name = 'resnet50'
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
  config.prune.fraction = 0.5
  config.prune.epoch = 20
  config.prune.class_balanced = False  # the paper's rule
  return config
