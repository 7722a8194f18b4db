"""The report's image grid reads only the images it draws."""

import numpy as np

from eeprune_jax import config_base
from eeprune_jax.data import sources
from eeprune_jax.report import plots
import test_data


def _data_config(**overrides):
  cfg = config_base.base_config().data
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


def test_the_grid_loads_only_the_images_it_draws(tmp_path, monkeypatch):
  config = _data_config(image_size=16)
  labels = sources.load_labels(config, 'train')
  n = len(labels)
  keep = np.random.default_rng(0).random(n) > 0.3
  scores = {'index': np.arange(n), 'label': labels, 'keep': keep}

  def no_full_split(*args, **kwargs):
    raise AssertionError('the grid read the whole training split')
  monkeypatch.setattr(sources, 'load_arrays', no_full_split)
  asked = []

  def load(indices):
    asked.append(list(indices))
    return plots.train_images_at(config, indices)
  path = tmp_path / 'grid.png'
  plots.plot_pruned_kept_grid(path, load, scores, [str(c) for c in range(10)], 'grid')
  assert path.stat().st_size > 0 and len(asked) == 1
  drawn = asked[0]
  assert len(drawn) == len(set(drawn)) == 2 * plots.GRID_IMAGES * 10 < n
  assert keep[drawn].sum() == (~keep[drawn]).sum() == plots.GRID_IMAGES * 10


def test_load_images_equals_the_split_at_those_indices_digits():
  config = _data_config(image_size=12)
  images, _ = sources.load_arrays(config, 'train[10:200]')
  indices = [0, 7, 189, 7]
  np.testing.assert_array_equal(sources.load_images(config, 'train[10:200]', indices),
                                images[indices])


@test_data.needs_shared_tfds
def test_load_images_equals_the_split_at_those_indices_tfds():
  config = _data_config(**{**test_data.SHARED_CFG, 'image_size': 32})
  # The split's first 600 in canonical order (decoding all 50,000 took 24 s).
  images, _ = sources.load_arrays(config, 'train[:600]')
  indices = [599, 3, 250]
  np.testing.assert_array_equal(sources.load_images(config, 'train', indices), images[indices])


@test_data.needs_shared_npz
def test_load_images_equals_the_split_at_those_indices_jpeg_npz():
  config = _data_config(source='npz', npz_path=str(test_data.SHARED_NPZ), name='cifar10',
                        image_size=32)
  images, _ = sources.load_arrays(config, 'train[:300]')
  indices = [299, 0, 42]
  np.testing.assert_array_equal(sources.load_images(config, 'train[:300]', indices),
                                images[indices])
