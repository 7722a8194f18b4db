"""A quick method comparison on the embedded digits (no network), with the tests' tiny model.

  python -m eeprune_jax.compare --config=configs/compare_demo.py --workdir=/tmp/compare_demo

Half-width ResNet-20 with a mid exit on 16x16 digits, 3 epochs, pruning 30% after epoch
1; methods none, random, final_confidence and eeprune_mid, seeds 0 and 1 (7 runs). About
15-30 seconds per run on a 2-core CPU. tests/test_compare.py runs it with fewer methods.
"""

import ml_collections

from eeprune_jax import config_base


def get_config() -> ml_collections.ConfigDict:
  """Tiny digits config plus the `compare` section."""
  config = config_base.base_config()
  config.data.source = 'digits'
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
  config.compare = compare = ml_collections.ConfigDict()
  compare.methods = 'none,random,final_confidence,eeprune_mid'
  compare.fractions = '0.3'
  compare.seeds = '0,1'
  # cost_matched (full data, fewer epochs) matches the measured cost of this method's runs;
  # '' = the first method listed that prunes in rounds.
  compare.cost_reference = ''
  compare.plot_fraction = -1.0  # < 0: the largest fraction with a finished run.
  return config
