"""Tests of the grain backend: the device backend's order, only kept reads, resume."""

import os

import xla_env  # pylint: disable=g-bad-import-order

os.environ['XLA_FLAGS'] = xla_env.flags(8)

import io  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax
import numpy as np
import pytest

from eeprune_jax import config_base, config_checks, parallel
from eeprune_jax import workdir as workdir_lib
from eeprune_jax.data import order as order_lib
from eeprune_jax.data import tfds_write
import feed_batches
import jax_cache
import test_data

BATCH = test_data.BATCH


@pytest.fixture(scope='module')
def mesh():
  assert jax.device_count() == 8, 'XLA_FLAGS must be set before jax is imported'
  return parallel.make_mesh()


def _pipeline(mesh, **kwargs):
  """test_data's pipeline, grain reading in this process (no worker processes)."""
  return test_data._pipeline(mesh, **{'grain_workers': 0, **kwargs})


def _train(pipe, epoch, mask):
  """The epoch's rows, batch after batch, as the train program reads them."""
  return feed_batches.host(feed_batches.train_batches(pipe, epoch, mask))


def _eval(pipe, split):
  """An eval pass's rows (padded), as the eval and per-example programs read them."""
  return feed_batches.host(feed_batches.eval_batches(pipe, split))


def _cifar_examples(n, seed):
  rng = np.random.default_rng(seed)
  return [{'id': f'{i}', 'image': rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
           'label': int(rng.integers(100)), 'coarse_label': 0} for i in range(n)]


@pytest.fixture(scope='module')
def cifar100_dir(tmp_path_factory):
  """A prepared 'cifar100' (TFRecord + ArrayRecord, 3 shards) with 160/40 examples."""
  root = str(tmp_path_factory.mktemp('tfds'))
  tfds_write.write_prepared(root, 'cifar100', {'train': _cifar_examples(160, 0),
                                               'test': _cifar_examples(40, 1)}, num_shards=3)
  return root


def test_order_is_shared_and_split_over_processes():
  kept = np.flatnonzero(np.arange(1000) % 3 != 0)
  order = order_lib.train_order(0, 2, kept, 64)
  assert order.shape == (len(kept) // 64, 64) and len(np.unique(order)) == order.size
  parts = [order_lib.process_columns(order, p, 4) for p in range(4)]
  np.testing.assert_array_equal(np.concatenate(parts, axis=1), order)


@pytest.mark.parametrize('source', ['digits', 'tfds'])
def test_same_batches_as_the_device_backend(source, mesh, cifar100_dir):
  cfg = (dict(image_size=16) if source == 'digits' else
         dict(source='tfds', name='cifar100', data_dir=cifar100_dir, eval_split='test'))
  batch = BATCH if source == 'digits' else 16
  pipes = {b: _pipeline(mesh, batch_size=batch, backend=b, augment='none', **cfg)
           for b in ('device', 'grain')}
  n = pipes['grain'].info.num_train
  mask = np.random.default_rng(1).random(n) < 0.7
  for epoch in (3, 4):  # grain's stream runs on from epoch 3 into epoch 4
    cats = {b: _train(p, epoch, mask) for b, p in pipes.items()}
    for k in cats['device']:  # same indices in the same order, same pixels (no augmentation)
      np.testing.assert_allclose(cats['grain'][k], cats['device'][k], atol=1e-5, err_msg=k)
  np.testing.assert_array_equal(pipes['grain'].train_labels, pipes['device'].train_labels)
  for split in ('train', 'eval'):
    ev = {b: _eval(p, split) for b, p in pipes.items()}
    for k in ev['device']:
      np.testing.assert_allclose(ev['grain'][k], ev['device'][k], atol=1e-5, err_msg=k)


def test_augmented_epoch_reads_only_kept_records(mesh, cifar100_dir):
  pipe = _pipeline(mesh, batch_size=16, backend='grain', augment='cifar', source='tfds',
                   name='cifar100', data_dir=cifar100_dir)
  source = pipe.source('train')
  source.log_reads = True
  mask = np.zeros(160, bool)
  mask[np.random.default_rng(2).permutation(160)[:70]] = True  # 70 kept: 4 steps of 16
  cat = _train(pipe, 1, mask)
  assert len(cat['index']) == 64 and mask[cat['index']].all()
  # The epoch read exactly what it trained: not the 160 records, nor the 6 kept ones the
  # order's cut drops (reads ahead, into epoch 2, are of kept records too).
  assert sorted(source.read_indices(1)) == sorted(cat['index'].tolist()), 'read != trained'
  assert mask[source.read_indices()].all()
  np.testing.assert_array_equal(cat['label'], pipe.train_labels[cat['index']])
  # Augmented (differs from the plain view), deterministic per (seed, epoch).
  plain = _eval(pipe, 'train')
  assert not np.allclose(cat['image'], plain['image'][cat['index']])
  again = _train(pipe, 1, mask)
  np.testing.assert_array_equal(cat['image'], again['image'])


def test_resume_mid_epoch_reads_nothing_it_skips(mesh, cifar100_dir):
  pipe = _pipeline(mesh, batch_size=16, backend='grain', augment='cifar', source='tfds',
                   name='cifar100', data_dir=cifar100_dir)
  mask = np.arange(160) % 5 != 0  # 128 kept: 8 steps
  full = [jax.device_get(f) for f in pipe.train_feeds(2, mask, 0, 1)]
  source = pipe.source('train')
  source.log_reads = True
  rest = [jax.device_get(f) for f in pipe.train_feeds(2, mask, 5, 1)]
  assert len(full) == 8 and len(rest) == 3
  for a, b in zip(full[5:], rest):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert sorted(source.read_indices(2)) == sorted(
      np.concatenate([f['index'] for f in full[5:]]).tolist())
  assert full[0]['image'].dtype == np.uint8  # feeds cross to the device as uint8


def test_worker_processes_serve_the_same_batches(mesh):
  # Worker processes (spawned, data pickled to them) and in-process reads agree.
  cats = [_train(_pipeline(mesh, backend='grain', augment='cifar', image_size=16,
                           grain_workers=w), 0, None) for w in (0, 2)]
  for k in cats[0]:
    np.testing.assert_array_equal(cats[0][k], cats[1][k])


def _jpeg(rng, h, w):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format='JPEG',
                                                                         quality=90)
  return buf.getvalue()


def test_imagenet_jpegs_crop_from_the_stored_image(tmp_path, mesh):
  rng = np.random.default_rng(0)
  examples = [{'image': _jpeg(rng, 50 + 3 * i, 70 - 2 * i), 'label': i % 1000,
               'file_name': f'{i}.jpeg'} for i in range(24)]
  tfds_write.write_prepared(str(tmp_path), 'imagenet2012',
                            {'train': examples, 'validation': examples[:8]})
  pipe = _pipeline(mesh, batch_size=8, eval_batch_size=8, backend='grain', source='tfds',
                   name='imagenet2012', data_dir=str(tmp_path), eval_split='validation',
                   augment='imagenet', image_size=24)
  cat = _train(pipe, 0, None)
  assert cat['image'].shape == (24, 24, 24, 3) and np.isfinite(cat['image']).all()
  assert pipe.info.num_classes == 1000
  ev = _eval(pipe, 'eval')
  assert ev['image'].shape == (8, 24, 24, 3) and ev['valid'].all()


@pytest.mark.parametrize('channels', [3, 1])
def test_opencv_crop_matches_pillows_exact_box(channels, monkeypatch):
  """The random resized crop through OpenCV (whole-pixel crop, bilinear resize) and
  through Pillow (exact box, antialiased bilinear) draw the same box and flip and agree to
  a few levels on a smooth image, shrinking and enlarging alike."""
  from eeprune_jax.data import host_augment  # pylint: disable=g-import-not-at-top
  assert host_augment.cv2 is not None, 'opencv-python-headless is a dependency'
  yy, xx = np.mgrid[0:350, 0:400]
  image = np.stack([128 + 100 * np.sin(yy / 40 + k) * np.cos(xx / 55 - k)
                    for k in range(channels)], -1).astype(np.uint8)
  for size in (64, 224):  # crops mostly larger than 64 and mostly smaller than 224
    for seed in range(20):
      fast = host_augment.random_resized_crop(image, size, np.random.default_rng(seed),
                                              flip=True)
      with monkeypatch.context() as m:
        m.setattr(host_augment, 'cv2', None)
        exact = host_augment.random_resized_crop(image, size, np.random.default_rng(seed),
                                                 flip=True)
      assert fast.shape == exact.shape == (size, size, channels)
      diff = np.abs(fast.astype(int) - exact.astype(int))
      assert diff.mean() < 3 and np.percentile(diff, 99) < 12, (size, seed, diff.mean())


def test_tfrecord_only_data_is_refused_with_the_fix(tmp_path, mesh):
  tfds_write.write_prepared(str(tmp_path), 'cifar100', {'train': _cifar_examples(32, 0),
                                                        'test': _cifar_examples(8, 1)},
                            file_formats=('tfrecord',))
  with pytest.raises(ValueError, match='convert_format.*array_record'):
    _pipeline(mesh, batch_size=16, backend='grain', source='tfds', name='cifar100',
              data_dir=str(tmp_path))


def test_config_checks_grain_fields():
  cfg = config_base.base_config()
  cfg.data.backend, cfg.data.grain_workers = 'grain', -2
  with pytest.raises(config_checks.ConfigError, match='grain_workers'):
    config_checks.validate(cfg)
  cfg.data.grain_workers = 0
  config_checks.validate(cfg)


# --- Two processes (the shipped configs end to end on grain: tests/test_host_paths.py) ---

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import pathlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import socket  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _env(devices: int) -> dict[str, str]:
  return xla_env.env(devices, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))


def test_two_processes_train_every_kept_example_once_per_epoch(tmp_path):
  """2 processes x 1 CPU device (jax.distributed on localhost), a mask that prunes 90% of
  the second half of the split (the part a contiguous reader on host 1 would hold): each
  epoch trains every kept example exactly once across both processes."""
  n, batch = 1437, 64  # digits
  keep = np.zeros(n, bool)
  keep[:700] = True
  keep[np.random.default_rng(0).choice(np.arange(n // 2, n), 68, replace=False)] = True
  assert keep.sum() % batch == 0  # 768 kept: 12 steps, no remainder dropped
  np.save(tmp_path / 'mask.npy', keep)
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  workdir = tmp_path / 'run'
  command = [sys.executable, '-m', 'eeprune_jax.main',
             f'--config={ROOT / "tests" / "tiny_config.py"}', f'--workdir={workdir}',
             '--multihost', f'--coordinator_address=localhost:{port}', '--num_processes=2',
             '--config.data.backend=grain', '--config.data.grain_workers=0',
             '--config.prune.method=none', f'--config.prune.mask_path={tmp_path / "mask.npy"}',
             '--config.train.num_epochs=2', '--config.train.last_pass_scores=True']
  procs = [subprocess.Popen(command + [f'--process_id={i}'], cwd=ROOT,
                            env=jax_cache.every_process_writes(_env(1)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['processes'] == 2 and summary['devices'] == 2
  assert [h['steps'] for h in summary['history']] == [12, 12]
  for epoch in (1, 2):
    with np.load(workdir_lib.RunDir(workdir).last_pass(epoch)) as table:
      trained = np.flatnonzero(table['epoch'] == epoch - 1)
    # 12 steps x 64 = 768 training passes in the epoch reached 768 distinct examples,
    # exactly the kept ones: each once.
    np.testing.assert_array_equal(trained, np.flatnonzero(keep))
