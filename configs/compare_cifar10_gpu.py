"""Does pruning beat training less? CIFAR-10 ResNet-18 on one GPU, several runs at once.

  bash benchmarks/gpu_science.sh PATH/cifar10_jpeg.npz [OUT_DIR]
or directly:
  python -m eeprune_jax.compare --config=configs/compare_cifar10_gpu.py --workdir=DIR \
      --config.data.npz_path=PATH/cifar10_jpeg.npz

The setting issue 12 measured by hand: the CIFAR-form ResNet-18 with a mid exit in
bfloat16 on the CIFAR-10 JPEG `.npz` (no TensorFlow needed), batch 512, lr 0.2, 20
epochs, 50% pruned at the start of epoch 5 (a fifth of the run). Methods: full data; the
cost-matched baseline (full data, fewer epochs, matched to EEPrune's measured cost);
random; EEPrune, the paper's rule and class-balanced; InfoBatch; dynamic EEPrune. Seeds 0
and 1: 14 runs, 7 at a time, each with 0.9 / 7 of the GPU's memory.

Runtime: 172 s for the 14 runs on one NVIDIA H200 (2026-11-30, warm compilation cache;
docs/results.md section 5). On a CPU: hours; use configs/compare_cifar10.py.
"""

import ml_collections

from eeprune_jax import config_base


def get_config() -> ml_collections.ConfigDict:
  """CIFAR-10 ResNet-18 comparison against the cost-matched baseline."""
  config = config_base.base_config()
  config.data.source = 'npz'
  config.data.name = 'cifar10'
  config.data.npz_path = 'cifar10_jpeg.npz'
  config.data.image_size = 32
  config.data.augment = 'cifar'
  config.data.backend = 'device'
  config.model.name = 'resnet18'
  config.model.stem = 'cifar'
  config.model.exits = 'mid'
  config.model.dtype = 'bfloat16'
  config.train.num_epochs = 20
  config.train.batch_size = 512
  config.train.eval_batch_size = 1000  # the 10,000 test images in 10 full batches
  config.train.learning_rate = 0.2
  config.train.weight_decay = 5e-4
  config.train.warmup_epochs = 1.0
  config.train.log_every_steps = 50
  config.train.progress_bar = False
  config.train.checkpoint_every_epochs = 5
  config.prune.fraction = 0.5
  config.prune.epoch = 4  # pruned at the start of epoch 5: a fifth of the run
  config.prune.class_balanced = False  # the paper's rule (eeprune_mid_balanced sets True)
  config.compare = compare = ml_collections.ConfigDict()
  compare.methods = ('none,cost_matched,random,eeprune_mid,eeprune_mid_balanced,infobatch,'
                     'eeprune_dynamic')
  compare.fractions = '0.5'  # comma-separated prune.fraction values; `none` runs at 0.
  compare.seeds = '0,1'  # comma-separated config.seed values.
  compare.cost_reference = 'eeprune_mid'  # what cost_matched matches: the paper's rule
  # The training-less frontier (full data on shares of the schedule): off here, so the
  # 14 runs stay those measured in docs/results.md; add it with
  # --config.compare.frontier=0.4,0.6,0.8,1.0 (8 more runs for 2 seeds).
  compare.frontier = ''
  compare.plot_fraction = -1.0  # < 0: the largest fraction with a finished run.
  # Runs at once, each its own process (1: one after another, in this process); each
  # gets memory_fraction of the accelerator's memory (0: 0.9 / parallel).
  compare.parallel = 7
  compare.memory_fraction = 0.0
  compare.progress_every_s = 30.0  # how often concurrent runs' status line is printed
  return config
