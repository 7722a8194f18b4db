"""data.download: a TFDS data set that is not prepared is downloaded and prepared once.

The success path uses a tiny TFDS builder registered here, whose one file is fetched by
TFDS's real download manager from a `file://` URL; the failure paths use an unreachable
HTTP host (always) and cifar100's real host (only where this machine has no network).
"""

import os
import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from eeprune_jax import data
from eeprune_jax import train
from eeprune_jax.data import download
import tiny_config as tiny_config_lib

_SOURCE = {'url': ''}  # the file the builder downloads, set by each test


class EepruneLocalShapes(tfds.core.GeneratorBasedBuilder):
  """Three classes of 8x8 images from one downloaded .npz (train 128, test 32)."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 3)),
            'label': tfds.features.ClassLabel(num_classes=3)}),
        supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    path = dl_manager.download(_SOURCE['url'])
    return {'train': self._generate_examples(path, 'train'), 'test': self._generate_examples(path, 'test')}

  def _generate_examples(self, path, split):
    with open(os.fspath(path), 'rb') as f:
      arrays = np.load(f)
      images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image, 'label': int(label)}


def _write_source(path):
  """Class c: images of brightness ~80c plus noise, so a network can learn them."""
  rng = np.random.default_rng(0)
  out = {}
  for split, n in (('train', 128), ('test', 32)):
    labels = np.arange(n) % 3
    images = np.clip(labels[:, None, None, None] * 80 + rng.integers(0, 60, (n, 8, 8, 3)),
                     0, 255).astype(np.uint8)
    out[f'{split}_images'], out[f'{split}_labels'] = images, labels
  np.savez(path, **out)


def _data_config(data_dir, **overrides):
  cfg = tiny_config_lib.get_config().data
  cfg.source, cfg.name, cfg.data_dir = 'tfds', 'eeprune_local_shapes', str(data_dir)
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


def test_download_prepares_a_local_data_set_and_trains(tmp_path):
  _write_source(tmp_path / 'shapes.npz')
  _SOURCE['url'] = f'file://{tmp_path / "shapes.npz"}'
  config = tiny_config_lib.get_config()
  config.data = _data_config(tmp_path / 'tfds')
  config.train.num_epochs, config.prune.method = 1, 'none'  # what is tested is the data
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert tfds.builder('eeprune_local_shapes', data_dir=str(tmp_path / 'tfds')).is_prepared()
  assert summary['ledger']['examples_trained'] == 128  # the downloaded train split, once
  assert len(summary['history']) == 1
  # Prepared once: a second look reads the copy, even with download off.
  info = data.dataset_info(_data_config(tmp_path / 'tfds', download=False))
  assert (info.num_train, info.num_eval, info.num_classes) == (128, 32, 3)


def test_download_false_keeps_the_not_prepared_message(tmp_path):
  _SOURCE['url'] = 'file:///nonexistent'
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.dataset_info(_data_config(tmp_path, download=False))
  msg = str(e.value)
  assert 'data.download=False' in msg and 'tfds build eeprune_local_shapes' in msg
  assert not (tmp_path / 'eeprune_local_shapes').exists()


def _closed_port():
  with socket.socket() as s:  # bound, never listening: connections are refused
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_unreachable_host_fails_at_once_with_the_message(tmp_path):
  _SOURCE['url'] = f'http://127.0.0.1:{_closed_port()}/shapes.npz'
  start = time.monotonic()
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.dataset_info(_data_config(tmp_path))
  assert time.monotonic() - start < download.PROBE_TIMEOUT_S  # refused: no retries
  msg = str(e.value)
  assert 'downloading it failed' in msg and '127.0.0.1' in msg and 'tfds build' in msg


def _online(host='www.cs.toronto.edu'):
  try:
    socket.create_connection((host, 443), timeout=3).close()
    return True
  except OSError:
    return False


@pytest.mark.skipif(_online(), reason='this machine reaches cifar100\'s host: the offline '
                    'failure cannot be tested here (it would download 160 MB)')
def test_offline_cifar100_download_fails_within_30_seconds(tmp_path):
  cfg = _data_config(tmp_path)
  cfg.name = 'cifar100'
  start = time.monotonic()
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.dataset_info(cfg)
  assert time.monotonic() - start < 30
  msg = str(e.value)
  assert 'cifar100' in msg and str(tmp_path) in msg and 'www.cs.toronto.edu' in msg


def test_manual_download_data_set_names_its_manual_folder(tmp_path):
  cfg = _data_config(tmp_path)
  cfg.name = 'imagenet2012'
  start = time.monotonic()
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.dataset_info(cfg)
  assert time.monotonic() - start < 10  # nothing is attempted
  assert str(tmp_path / 'downloads' / 'manual') in str(e.value)
