"""The run `benchmarks/loop.py` times: the training loop against its bare step.

  python -m eeprune_jax.main --config=configs/loop_benchmark.py:cpu --workdir=/tmp/loop
  python -m eeprune_jax.main --config=configs/loop_benchmark.py:gpu --workdir=/tmp/loop \
      --config.data.npz_path=../shared/data/cifar10/cifar10_jpeg.npz

'cpu' (default): ResNet-20 at width 0.125 on the embedded digits at 8x8, batch 32, 30
epochs, no pruning: a step small enough that the host's work per step shows (about a
minute on a 2-core CPU). 'gpu': the CIFAR-form ResNet-18 (no exit, as the PyTorch
reference) in bfloat16 on the CIFAR-10 JPEG `.npz`, batch 512, 20 epochs (about a minute on
one H100/H200). 'smoke': 'cpu' with ResNet-8 on 128 training and 64 test digits for 2
epochs, the least that runs every path of the benchmarks that use it (`--smoke`; seconds,
for tests).
"""

from eeprune_jax import config_base


def get_config(preset: str = 'cpu'):
  """Loop benchmark config; `preset` is 'cpu', 'gpu' or 'smoke'."""
  config = config_base.base_config()
  config.prune.method = 'none'
  config.train.progress_bar = False
  config.train.checkpoint_every_epochs = 1000  # the final checkpoint only
  if preset in ('cpu', 'smoke'):
    config.data.source = 'digits'
    config.data.image_size = 8
    config.model.name = 'resnet20'
    config.model.width = 0.125
    config.train.num_epochs = 30
    config.train.batch_size = 32
    config.train.eval_batch_size = 120  # the 360 test digits in 3 full batches
    config.train.learning_rate = 0.05
    if preset == 'smoke':
      # 4 steps an epoch and one eval batch; 2 epochs, as loop.py reads the epochs after
      # the first.
      config.data.train_split = 'train[:128]'
      config.data.eval_split = 'test[:64]'
      config.train.num_epochs = 2
      config.train.eval_batch_size = 64
      config.model.name = 'resnet8'  # compiles in about half ResNet-20's time
  elif preset == 'gpu':
    config.data.source = 'npz'
    config.data.name = 'cifar10'
    config.data.npz_path = 'cifar10_jpeg.npz'
    config.model.name = 'resnet18'
    config.model.dtype = 'bfloat16'
    config.model.exits = 'none'  # the network benchmarks/pytorch_reference.py trains
    config.train.num_epochs = 20
    config.train.batch_size = 512
    config.train.eval_batch_size = 1000  # the 10,000 test images in 10 full batches
    config.train.learning_rate = 0.2
  else:
    raise ValueError(f"preset must be 'cpu', 'gpu' or 'smoke', not {preset!r}.")
  config.train.log_every_steps = 50
  return config
