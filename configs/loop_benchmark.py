"""The run `benchmarks/loop.py` times: the training loop against its bare step.

  python -m eeprune_jax.main --config=configs/loop_benchmark.py:cpu --workdir=/tmp/loop
  python -m eeprune_jax.main --config=configs/loop_benchmark.py:gpu --workdir=/tmp/loop \
      --config.data.npz_path=../shared/data/cifar10/cifar10_jpeg.npz

'cpu' (default): ResNet-20 at width 0.125 on the embedded digits at 8x8, batch 32, 30
epochs, no pruning: a step small enough that the host's work per step shows (about a
minute on a 2-core CPU). 'gpu': the CIFAR-form ResNet-18 (no exit, as the PyTorch
reference) in bfloat16 on the CIFAR-10 JPEG `.npz`, batch 512, 20 epochs (about a minute on
one H100/H200).
"""

from eeprune_jax import config_base


def get_config(preset: str = 'cpu'):
  """Loop benchmark config; `preset` is 'cpu' or 'gpu'."""
  config = config_base.base_config()
  config.prune.method = 'none'
  config.train.progress_bar = False
  config.train.checkpoint_every_epochs = 1000  # the final checkpoint only
  if preset == 'cpu':
    config.data.source = 'digits'
    config.data.image_size = 8
    config.model.name = 'resnet20'
    config.model.width = 0.125
    config.train.num_epochs = 30
    config.train.batch_size = 32
    config.train.eval_batch_size = 120  # the 360 test digits in 3 full batches
    config.train.learning_rate = 0.05
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
    raise ValueError(f"preset must be 'cpu' or 'gpu', not {preset!r}.")
  config.train.log_every_steps = 50
  return config
