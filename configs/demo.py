"""The README's main job: EEPrune on the embedded digits data, every phase, no network.

  python -m eeprune_jax.main --config=configs/demo.py --workdir=/tmp/eeprune_demo

Trains a narrow CIFAR-form ResNet-18 with a mid exit on scikit-learn's 1,797 handwritten
digits (32x32), scores after epoch 4 and prunes up to 40% (on this small, young network not
every example is eligible: one run pruned 36%, and summary.json reports the shortfall),
continues on the kept examples, evaluates each epoch and checkpoints. About 1-2 minutes on
a 2-core CPU.
"""

from eeprune_jax import config_base


def get_config():
  """Demo config."""
  config = config_base.base_config()
  config.data.source = 'digits'
  config.data.image_size = 32
  config.data.augment = 'cifar'
  config.model.name = 'resnet18'
  config.model.width = 0.25
  config.model.exits = 'mid'
  config.train.num_epochs = 8
  config.train.batch_size = 64
  config.train.eval_batch_size = 256
  config.train.learning_rate = 0.05
  config.train.warmup_epochs = 1.0
  config.train.log_every_steps = 10
  config.prune.method = 'eeprune'
  config.prune.fraction = 0.4
  config.prune.epoch = 4
  return config
