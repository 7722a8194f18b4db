"""A run of a few seconds per epoch for tests: narrow ResNet-20 on the 8x8 digits.

  python -m eeprune_jax.main --config=tests/tiny_config.py --workdir=/tmp/tiny

Chosen so that the pruning round is a real one: after 2 epochs of AdamW without
augmentation (digits are not flip-invariant, and a pad-4 crop would move an 8x8 digit by
half its size) the network is past predicting one class, enough examples are eligible to
prune the full 30% (no shortfall), and the confidence ranking decides which. A run is also
stable against float-level perturbations: 1 and 8 devices (different reduction orders)
agree on the keep mask for 99.4-100% of the examples over seeds 0-2, with the rest next to
the cutoff (tests/test_train.py checks this). The digits' native 8x8 took a quarter less
time per run than the 16x16 upsampling used before, with the same 30% pruned and closer
agreement (97.4-99.4% at 16x16). With SGD at lr 0.05 and the CIFAR augmentation, the same
network still predicted one class at the pruning epoch and the two device counts agreed on
only ~80% of a 30% mask.
"""

from eeprune_jax import config_base


def get_config():
  """Tiny test config."""
  config = config_base.base_config()
  config.data.image_size = 8  # the digits' native size
  config.data.augment = 'none'
  config.model.name = 'resnet20'
  config.model.width = 0.5
  config.model.exits = 'mid'
  config.train.num_epochs = 3
  config.train.batch_size = 64
  config.train.eval_batch_size = 128
  config.train.optimizer = 'adamw'
  config.train.learning_rate = 0.002
  config.train.warmup_epochs = 0.5
  config.train.log_every_steps = 5
  config.train.progress_bar = False
  config.prune.fraction = 0.3
  config.prune.epoch = 2
  # The paper's rule. With class quotas the mask also depends on confidence rankings at
  # each class's cutoff; the cross-device test bounds the paper rule's agreement.
  config.prune.class_balanced = False
  return config
