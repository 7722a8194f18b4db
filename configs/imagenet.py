"""EEPrune on ImageNet-1k with ResNet-50 (ImageNet form) at TPU pod batch sizes.

  python -m eeprune_jax.main --multihost --config=configs/imagenet.py \
      --workdir=gs://BUCKET/runs/imagenet --config.data.data_dir=gs://BUCKET/tensorflow_datasets

Run on every host of a TPU pod (launch/tpu_vm.sh does this). Needs `imagenet2012`
prepared in data.data_dir (manual download). Streams through tf.data on each host; bfloat16
compute. Expected runtime: about 3.5 h on a v4-32 slice (90 epochs, 30% pruned after 10).
"""

from eeprune_jax import config_base


def get_config():
  """ImageNet / ResNet-50 config."""
  config = config_base.base_config()
  config.data.source = 'tfds'
  config.data.name = 'imagenet2012'
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.image_size = 224
  config.data.augment = 'imagenet'
  config.data.backend = 'tfdata'
  config.model.name = 'resnet50'
  config.model.stem = 'imagenet'
  config.model.exits = 'mid'
  config.model.dtype = 'bfloat16'
  config.train.num_epochs = 90
  config.train.batch_size = 4096
  config.train.eval_batch_size = 4096
  config.train.learning_rate = 1.6  # 0.1 x batch / 256
  config.train.weight_decay = 5e-5
  config.train.warmup_epochs = 5.0
  config.train.label_smoothing = 0.1
  config.train.log_every_steps = 100
  config.prune.fraction = 0.3
  config.prune.epoch = 10
  return config
