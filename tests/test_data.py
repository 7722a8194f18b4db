"""Tests of eeprune_jax.data: sources, the tf.data and the device-resident backends."""

import os

# 8 CPU devices for the multi-device tests; must precede the first jax import.
import xla_env  # pylint: disable=g-bad-import-order

os.environ['XLA_FLAGS'] = xla_env.flags(8)

import io  # pylint: disable=g-import-not-at-top,wrong-import-position
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from eeprune_jax import config_base, parallel
from eeprune_jax import data
from eeprune_jax.data import sources
import feed_batches
import source_ast

SHARED = pathlib.Path(__file__).parents[2] / 'shared' / 'data'
SHARED_TFDS = SHARED / 'tfds'
SHARED_NPZ = SHARED / 'cifar10' / 'cifar10_jpeg.npz'
needs_shared_tfds = pytest.mark.skipif(
    not (SHARED_TFDS / 'cifar10').exists(),
    reason=f'shared CIFAR-10 TFDS copy not found at {SHARED_TFDS}')
needs_shared_npz = pytest.mark.skipif(
    not SHARED_NPZ.exists(), reason=f'shared CIFAR-10 JPEG npz not found at {SHARED_NPZ}')

BACKENDS = ('device', 'tfdata')
BATCH, EVAL_BATCH = 64, 48  # 1,437 digits train examples: divisible by neither, nor by 8.


@pytest.fixture(scope='module')
def mesh():
  assert jax.device_count() == 8, 'XLA_FLAGS must be set before jax is imported'
  return parallel.make_mesh()


def _config(**overrides):
  cfg = config_base.base_config().data
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


def _pipeline(mesh, batch_size=BATCH, eval_batch_size=EVAL_BATCH, seed=0, **overrides):
  return data.create_pipeline(_config(**overrides), batch_size=batch_size,
                              eval_batch_size=eval_batch_size, mesh=mesh, seed=seed)


def _train(pipe, epoch, mask):
  """(the epoch's batches as the train program reads them [steps, B, ...], host rows)."""
  batches = feed_batches.train_batches(pipe, epoch, mask)
  return batches, feed_batches.host(batches)


def _eval(pipe, split):
  """(an eval pass's batches as the eval program reads them, host rows)."""
  batches = feed_batches.eval_batches(pipe, split)
  return batches, feed_batches.host(batches)


def _check_batches(batches, mesh, num_batches, global_batch, image_shape):
  """`num_batches` batches of `global_batch` rows each, every field split over the mesh."""
  assert set(batches) == {'image', 'label', 'index', 'valid'}
  lead = (num_batches, global_batch)
  expected = {'image': (np.float32, lead + image_shape), 'label': (np.int32, lead),
              'index': (np.int32, lead), 'valid': (np.bool_, lead)}
  for k, (dtype, shape) in expected.items():
    v = batches[k]
    assert isinstance(v, jax.Array) and v.dtype == dtype and v.shape == shape, k
    assert v.sharding.mesh == mesh and v.sharding.spec[1] == 'batch', (k, v.sharding)
    assert v.sharding.is_equivalent_to(
        jax.sharding.NamedSharding(mesh, P(None, 'batch', *[None] * (v.ndim - 2))), v.ndim)


def _check_eval_cover(pipe, split, mesh):
  n = pipe.info.num_train if split == 'train' else pipe.info.num_eval
  batches, cat = _eval(pipe, split)
  num_batches = pipe.num_eval_steps(split)
  assert num_batches == -(-n // pipe.eval_batch_size)
  _check_batches(batches, mesh, num_batches, pipe.eval_batch_size, pipe.info.image_shape)
  valid = cat['valid']
  np.testing.assert_array_equal(np.sort(cat['index'][valid]), np.arange(n))
  assert (cat['index'][~valid] == data.PAD_INDEX).all()
  assert not cat['image'][~valid].any()
  return cat


# --- digits, both backends -------------------------------------------------------------


def test_digits_info():
  info = data.dataset_info(_config(image_size=16))
  assert (info.num_train, info.num_eval, info.num_classes) == (1437, 360, 10)
  assert info.image_shape == (16, 16, 1) and len(info.mean) == len(info.std) == 1
  images, labels = sources.load_arrays(_config(image_size=16), 'eval')
  assert images.shape == (360, 16, 16, 1) and images.dtype == np.uint8
  assert labels.dtype == np.int32 and set(labels) == set(range(10))


def test_digits_are_scikit_learns_load_digits():
  """Read from scikit-learn's file without importing it: the same images, labels, order."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  d = datasets.load_digits()
  images, labels = sources.load_arrays(_config(image_size=8), 'train')
  train = np.arange(len(d.target)) % 5 != 0
  np.testing.assert_array_equal(images[..., 0], np.round(d.images[train] * 255 / 16))
  np.testing.assert_array_equal(labels, d.target[train])


@pytest.mark.parametrize('backend', BACKENDS)
def test_eval_covers_every_index_once(backend, mesh):
  pipe = _pipeline(mesh, backend=backend)
  cat = _check_eval_cover(pipe, 'train', mesh)
  valid = cat['valid']
  np.testing.assert_array_equal(cat['label'][valid], pipe.train_labels[cat['index'][valid]])
  _check_eval_cover(pipe, 'eval', mesh)


@pytest.mark.parametrize('backend', BACKENDS)
def test_train_mask_steps_and_determinism(backend, mesh):
  pipe = _pipeline(mesh, backend=backend)
  n = pipe.info.num_train
  assert pipe.steps_per_epoch(None) == n // BATCH
  mask = np.random.default_rng(0).random(n) < 0.6
  steps = pipe.steps_per_epoch(mask)
  assert steps == mask.sum() // BATCH
  batches, cat = _train(pipe, 2, mask)
  _check_batches(batches, mesh, steps, BATCH, pipe.info.image_shape)
  assert cat['valid'].all()
  assert mask[cat['index']].all(), 'a pruned example was served'
  assert len(np.unique(cat['index'])) == steps * BATCH
  np.testing.assert_array_equal(cat['label'], pipe.train_labels[cat['index']])
  _, again = _train(pipe, 2, mask)
  for k in cat:
    np.testing.assert_array_equal(cat[k], again[k])
  _, other = _train(pipe, 3, mask)
  assert not np.array_equal(cat['index'], other['index'])
  # Augmentation is on: the same examples differ from their un-augmented view (the eval
  # pass holds example i at row i).
  _, plain = _eval(pipe, 'train')
  assert not np.allclose(cat['image'], plain['image'][cat['index']])


def test_backends_agree_without_augmentation(mesh):
  cats = {b: _eval(_pipeline(mesh, backend=b, augment='none'), 'train')[1] for b in BACKENDS}
  for k in ('index', 'label', 'valid'):
    np.testing.assert_array_equal(cats['device'][k], cats['tfdata'][k])
  np.testing.assert_allclose(cats['device']['image'], cats['tfdata']['image'], atol=1e-5)


@pytest.mark.parametrize('backend', BACKENDS)
def test_imagenet_augment_runs(backend, mesh):
  pipe = _pipeline(mesh, backend=backend, augment='imagenet', image_size=24)
  batches, cat = _train(pipe, 0, np.arange(pipe.info.num_train) < BATCH)  # one step
  _check_batches(batches, mesh, 1, BATCH, (24, 24, 1))
  assert np.isfinite(cat['image']).all()


def test_mask_errors(mesh):
  pipe = _pipeline(mesh, backend='device')
  with pytest.raises(ValueError, match=r'1436.*digits.*1437|digits.*1437.*1436'):
    pipe.steps_per_epoch(np.ones(1436, bool))
  with pytest.raises(ValueError, match='1436'):
    next(pipe.train_feeds(0, np.ones(1436, bool), 0, 1))
  with pytest.raises(ValueError, match='fewer than one batch'):
    pipe.steps_per_epoch(np.arange(1437) < 10)


def test_device_backend_without_tensorflow():
  code = textwrap.dedent("""
      import sys
      sys.modules['tensorflow'] = None  # any import of TensorFlow now fails
      sys.modules['tensorflow_datasets'] = None
      sys.path.insert(0, TESTS)
      import numpy as np
      from eeprune_jax import config_base, parallel, data
      from eeprune_jax.data import device
      import feed_batches
      cfg = config_base.base_config().data
      pipe = data.create_pipeline(cfg, batch_size=32, eval_batch_size=64,
                                  mesh=parallel.make_mesh(), seed=1)
      assert isinstance(pipe, device.DevicePipeline)
      b = feed_batches.train_batches(pipe, 0, np.arange(1437) % 3 > 0)
      assert b['image'].shape == (958 // 32, 32, 32, 32, 1), b['image'].shape
      n = int(feed_batches.eval_batches(pipe, 'eval')['valid'].sum())
      assert n == 360, n
      # Split slices need no TensorFlow either.
      cfg.train_split, cfg.eval_split = 'train[:800]', 'test[50%:]'
      pipe = data.create_pipeline(cfg, batch_size=32, eval_batch_size=64,
                                  mesh=parallel.make_mesh(), seed=1)
      assert (pipe.info.num_train, pipe.info.num_eval) == (800, 180), pipe.info
      print('OK')
  """).replace('TESTS', repr(str(pathlib.Path(__file__).parent)))
  env = xla_env.env(1)
  root = str(pathlib.Path(__file__).parents[1])
  env['PYTHONPATH'] = os.pathsep.join([root] + [p for p in [env.get('PYTHONPATH')] if p])
  res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       env=env, timeout=120, check=False)
  assert res.returncode == 0 and 'OK' in res.stdout, res.stderr[-3000:]


# --- split slices ------------------------------------------------------------------------

# Valid for some sizes of the parametrized test and not for others (then both refuse).
SLICE_SPECS = ('train', 'train[:100]', 'train[100:]', 'train[-10:]', 'train[5:-5]',
               'train[:10%]', 'train[10%:]', 'train[-25%:]', 'train[12.5%:87.5%]',
               'train[:33.3%]', 'train[1:2%]', 'test[25%:75%]', 'test[:1_0]', 'train[-77:]',
               'train[:2000]', 'train[-2000:]', 'train[:101%]', 'train[1.5:]', 'train[:]',
               'train[3]', 'train[a:b]')


@pytest.mark.parametrize('size', [77, 200, 1437])
def test_split_slices_mean_what_tfds_means(size):
  """`slice_range` (no TensorFlow) resolves every spec as TFDS does, or both refuse it."""
  import types  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  infos = {s: types.SimpleNamespace(num_examples=size, shard_lengths=[size])
           for s in ('train', 'test')}
  accepted = 0
  for spec in SLICE_SPECS:
    try:
      (ins,) = tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos)
    except ValueError:
      with pytest.raises(ValueError, match=r'split .*'):
        sources.slice_range(spec, lambda name: size)
      continue
    expected = (ins.splitname, ins.from_ or 0, size if ins.to is None else ins.to)
    assert sources.slice_range(spec, lambda name: size) == expected, spec
    accepted += 1
  assert accepted >= 10
  with pytest.raises(ValueError, match='compound splits'):  # TFDS would read both
    sources.slice_range('train+test', lambda name: size)


def test_digits_slices_keep_the_canonical_order(mesh):
  full_images, full_labels = sources.load_arrays(_config(image_size=16), 'train')
  sliced = dict(image_size=16, train_split='train[1000:]', eval_split='test[:25%]')
  cfg = _config(**sliced)
  info = data.dataset_info(cfg)
  assert (info.num_train, info.num_eval, info.num_classes) == (437, 90, 10)
  images, labels = sources.load_arrays(cfg, 'train')
  np.testing.assert_array_equal(images, full_images[1000:])
  np.testing.assert_array_equal(labels, full_labels[1000:])
  np.testing.assert_array_equal(sources.load_labels(cfg, 'eval'),
                                sources.load_labels(_config(), 'eval')[:90])
  # Stable indices count from the start of the slice: index k is whole-split 1000 + k.
  pipe = _pipeline(mesh, batch_size=32, eval_batch_size=32, augment='none', **sliced)
  cat = _check_eval_cover(pipe, 'train', mesh)
  valid = cat['valid']
  np.testing.assert_array_equal(cat['label'][valid], full_labels[1000 + cat['index'][valid]])
  with pytest.raises(ValueError, match=r"'train\[:2000\]'.*1437"):
    data.dataset_info(_config(train_split='train[:2000]'))


def _jpeg_npz(path, rng, sizes):
  """A small npz in the JPEG layout, with class names."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  arrays = {'class_names': np.array(['ant', 'bee', 'cat'])}
  for split, n in sizes.items():
    blobs = []
    for _ in range(n):
      buf = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (12, 12, 3), np.uint8)).save(buf, format='JPEG')
      blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    arrays[f'{split}_jpeg'] = np.concatenate(blobs)
    arrays[f'{split}_offsets'] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    arrays[f'{split}_labels'] = np.arange(n) % 3
  np.savez(path, **arrays)


@pytest.mark.parametrize('layout', ['raw', 'jpeg'])
def test_npz_slices(tmp_path, layout):
  rng = np.random.default_rng(0)
  path = tmp_path / 'toy.npz'
  if layout == 'raw':
    np.savez(path, images=rng.integers(0, 256, (90, 12, 12, 3), np.uint8),
             labels=np.arange(90) % 3, test_images=rng.integers(0, 256, (30, 12, 12, 3), np.uint8),
             test_labels=np.arange(30) % 3)
  else:
    _jpeg_npz(path, rng, {'train': 90, 'test': 30})
  whole = _config(source='npz', npz_path=str(path), image_size=12)
  full_images, full_labels = sources.load_arrays(whole, 'train')
  # The slice misses class 2 at its end, not its count: classes come from the whole split.
  cfg = _config(source='npz', npz_path=str(path), image_size=12,
                train_split='train[-10%:-1]', eval_split='test[:4]')
  info = data.dataset_info(cfg)
  assert (info.num_train, info.num_eval, info.num_classes) == (8, 4, 3)
  if layout == 'jpeg':
    assert info.class_names == ('ant', 'bee', 'cat')
  images, labels = sources.load_arrays(cfg, 'train')
  np.testing.assert_array_equal(images, full_images[81:89])
  np.testing.assert_array_equal(labels, full_labels[81:89])
  np.testing.assert_array_equal(sources.load_labels(cfg, 'train'), full_labels[81:89])
  assert sources.num_examples(cfg, 'eval') == 4
  with pytest.raises(ValueError, match=r"'test\[:31\]'.*30 examples"):
    sources.num_examples(_config(source='npz', npz_path=str(path), eval_split='test[:31]'),
                         'eval')


# --- npz ---------------------------------------------------------------------------------


def test_npz_raw_layout(tmp_path, mesh):
  rng = np.random.default_rng(0)
  path = tmp_path / 'toy.npz'
  np.savez(path, images=rng.integers(0, 256, (77, 20, 20), np.uint8),
           labels=rng.integers(0, 5, 77), test_images=rng.integers(0, 256, (30, 20, 20),
                                                                   np.uint8),
           test_labels=rng.integers(0, 5, 30))
  cfg = dict(source='npz', npz_path=str(path), image_size=16)
  info = data.dataset_info(_config(**cfg))
  assert (info.num_train, info.num_eval, info.image_shape) == (77, 30, (16, 16, 1))
  assert info.num_classes == 5 and info.mean == (127.5,)
  images, labels = sources.load_arrays(_config(**cfg), 'train')
  assert images.shape == (77, 16, 16, 1) and labels.dtype == np.int32
  for backend in BACKENDS:
    pipe = _pipeline(mesh, batch_size=16, eval_batch_size=16, backend=backend, **cfg)
    _check_eval_cover(pipe, 'train', mesh)
  with pytest.raises(KeyError, match=r"toy\.npz.*'val_images'"):
    data.dataset_info(_config(**cfg, eval_split='val'))


def test_npz_missing_key_named(tmp_path):
  path = tmp_path / 'bad.npz'
  np.savez(path, images=np.zeros((4, 8, 8), np.uint8))
  with pytest.raises(KeyError, match=r"bad\.npz.*'labels'"):
    sources.load_arrays(_config(source='npz', npz_path=str(path)), 'train')


@needs_shared_npz
def test_npz_jpeg_layout(tmp_path, mesh):
  with np.load(SHARED_NPZ) as f:
    info = data.dataset_info(_config(source='npz', npz_path=str(SHARED_NPZ), name='cifar10'))
    assert (info.num_train, info.num_eval, info.num_classes) == (50000, 10000, 10)
    assert info.image_shape == (32, 32, 3) and info.mean[0] == pytest.approx(125.307)
    assert info.class_names == tuple(str(c) for c in f['class_names'])
    # A small copy in the same layout, so the full decode stays fast.
    small = {}
    for split, n in (('train', 100), ('test', 40)):
      off = f[f'{split}_offsets'][:n + 1]
      small[f'{split}_jpeg'] = f[f'{split}_jpeg'][:off[-1]]
      small[f'{split}_offsets'] = off
      small[f'{split}_labels'] = f[f'{split}_labels'][:n]
    small['class_names'] = f['class_names']
  path = tmp_path / 'small_jpeg.npz'
  np.savez(path, **small)
  cfg = dict(source='npz', npz_path=str(path), name='cifar10')
  images, labels = sources.load_arrays(_config(**cfg), 'eval')
  assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, small['test_labels'])
  for backend in BACKENDS:
    pipe = _pipeline(mesh, batch_size=32, eval_batch_size=32, backend=backend, **cfg)
    assert pipe.steps_per_epoch(None) == 3
    _check_eval_cover(pipe, 'eval', mesh)


# --- TFDS --------------------------------------------------------------------------------


def test_tfds_not_prepared_error_without_download(tmp_path):
  cfg = _config(source='tfds', name='cifar100', data_dir=str(tmp_path), download=False)
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.dataset_info(cfg)
  msg = str(e.value)
  assert 'cifar100' in msg and str(tmp_path) in msg and 'tfds build' in msg


def test_tfds_cifar100_on_every_backend(tmp_path, mesh):
  """A prepared CIFAR-100 (random records in 3 TFRecord + ArrayRecord shards, as
  `tfds build` leaves them): metadata, eval cover and a masked epoch on every backend;
  the host backend's pixels and labels equal the device backend's."""
  import tfds_files  # pylint: disable=g-import-not-at-top
  tfds_files.write_prepared(tmp_path, 'cifar100', {'train': 80, 'test': 40},
                            image_shape=(32, 32, 3), classes=100, shards=3)
  cfg = dict(source='tfds', name='cifar100', data_dir=str(tmp_path))
  info = data.dataset_info(_config(**cfg))
  assert (info.num_train, info.num_eval, info.num_classes) == (80, 40, 100)
  assert info.image_shape == (32, 32, 3) and info.mean[0] == pytest.approx(129.3105)
  cats = {}
  for backend in BACKENDS + ('grain',):
    # grain: the eval passes read in this process, the epoch in one worker process (the
    # ArrayRecord source pickled to it). Every stream starts its own workers, each of which
    # imports JAX (about 3 CPU-s): one is enough to cover the path.
    make = lambda workers: _pipeline(mesh, batch_size=16, eval_batch_size=24,
                                     backend=backend, augment='none', grain_workers=workers,
                                     **cfg)
    pipe = make(0)
    cat = _check_eval_cover(pipe, 'train', mesh)
    order = np.argsort(np.where(cat['valid'], cat['index'], len(cat['index'])))[:80]
    cats[backend] = {k: v[order] for k, v in cat.items()}  # by index: read orders differ
    _check_eval_cover(pipe, 'eval', mesh)
    if backend == 'grain':
      pipe = make(1)
      assert pipe.num_workers == 1
    mask = np.arange(80) % 4 != 1
    _, cat = _train(pipe, 0, mask)
    assert len(cat['index']) == 48 and mask[cat['index']].all()
    np.testing.assert_array_equal(cat['label'], pipe.train_labels[cat['index']])
  for backend in cats:
    np.testing.assert_allclose(cats['device']['image'], cats[backend]['image'], atol=1e-5)
    np.testing.assert_array_equal(cats['device']['label'], cats[backend]['label'])


SHARED_CFG = dict(source='tfds', name='cifar10', data_dir=str(SHARED_TFDS),
                  train_split='train[:600]', eval_split='test[:300]', augment='none')


@needs_shared_tfds
def test_shared_cifar10_tfds(mesh):
  full = data.dataset_info(_config(**{**SHARED_CFG, 'train_split': 'train',
                                       'eval_split': 'test'}))
  assert (full.num_train, full.num_eval, full.num_classes) == (50000, 10000, 10)
  assert full.image_shape == (32, 32, 3)
  cats = {}
  for backend in BACKENDS:
    pipe = _pipeline(mesh, batch_size=64, eval_batch_size=64, backend=backend, **SHARED_CFG)
    assert pipe.info.num_train == 600 and pipe.steps_per_epoch(None) == 9
    cats[backend] = _check_eval_cover(pipe, 'eval', mesh)
    labels = pipe.train_labels
    assert labels.shape == (600,) and np.bincount(labels, minlength=10).min() > 30
    mask = np.arange(600) % 3 != 0
    _, cat = _train(pipe, 1, mask)
    assert mask[cat['index']].all() and len(np.unique(cat['index'])) == 384
    np.testing.assert_array_equal(cat['label'], labels[cat['index']])
  for k in ('index', 'label', 'valid'):
    np.testing.assert_array_equal(cats['device'][k], cats['tfdata'][k])
  np.testing.assert_allclose(cats['device']['image'], cats['tfdata']['image'], atol=1e-5)


@needs_shared_tfds
@needs_shared_npz
def test_shared_jpeg_npz_matches_tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  ds = tfds.load('cifar10', split='train[:12]', data_dir=str(SHARED_TFDS), download=False,
                 shuffle_files=False)
  # TFDS's 'id' ('train_16399') is the position in the original order the npz keeps.
  with np.load(SHARED_NPZ) as f:
    jpeg, offsets, npz_labels = f['train_jpeg'], f['train_offsets'], f['train_labels']
    for ex in tfds.as_numpy(ds):
      i = int(ex['id'].decode().split('_')[1])
      img = np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())))
      np.testing.assert_array_equal(img, ex['image'])
      assert npz_labels[i] == ex['label']
    np.testing.assert_array_equal(np.bincount(npz_labels), np.full(10, 5000))
  tfds_images, _ = sources.load_arrays(_config(**SHARED_CFG), 'train')
  np.testing.assert_array_equal(tfds_images[:12], np.stack(
      [ex['image'] for ex in tfds.as_numpy(ds)]))


@needs_shared_tfds
@needs_shared_npz
def test_shared_tfds_copy_gets_the_class_names_of_the_npz():
  """The TFDS copy stores only '0'..'9' as names; the sources show CIFAR-10's names."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  stored = tfds.builder('cifar10', data_dir=str(SHARED_TFDS)).info.features['label'].names
  assert list(stored) == [str(i) for i in range(10)]  # why the table is needed
  with np.load(SHARED_NPZ) as f:
    npz_names = tuple(str(c) for c in f['class_names'])
  assert data.dataset_info(_config(**SHARED_CFG)).class_names == npz_names
  assert sources.class_metadata(_config(**SHARED_CFG))[2] == npz_names


def test_known_class_names_only_replace_indices():
  assert sources.named_classes('cifar100', None, 100)[:3] == ('apple', 'aquarium_fish', 'baby')
  assert len(set(sources.named_classes('cifar100', None, 100))) == 100
  assert sources.named_classes('cifar10/x:3.0.2', [str(i) for i in range(10)], 10)[0] == 'airplane'
  assert sources.named_classes('cifar10', ['a'] * 10, 10) == ('a',) * 10  # real names stay
  assert sources.named_classes('digits', None, 3) == ('0', '1', '2')
  assert sources.named_classes('cifar10', None, 7) == tuple('0123456')  # a count mismatch


def _compares_data_source(tree) -> list[str]:
  """Comparisons of a `.source` attribute with a source's name."""
  import ast  # pylint: disable=g-import-not-at-top
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Compare):
      sides = [node.left, *node.comparators]
      if (any(isinstance(s, ast.Attribute) and s.attr == 'source' for s in sides) and
          any(isinstance(s, ast.Constant) and s.value in sources.names() for s in sides)):
        found.append(ast.unparse(node))
  return found


def test_sources_are_plugins_behind_one_protocol(tmp_path):
  """Each source is its own module, registered under its config name; nothing outside
  `data/sources/` switches on a source's name; the config check asks the registry and the
  source for its own fields."""
  from eeprune_jax import config_checks  # pylint: disable=g-import-not-at-top
  assert set(sources.names()) == {'digits', 'npz', 'tfds'}
  for name in sources.names():
    assert type(sources.base.get(name)).__module__ == f'eeprune_jax.data.sources.{name}'
  repo = pathlib.Path(__file__).resolve().parents[1]
  files = [p for p in (repo / 'eeprune_jax').rglob('*.py') if 'sources' not in p.parts]
  trees = source_ast.parse(*(p.read_text() for p in files))
  found = {str(p.relative_to(repo)): _compares_data_source(t) for p, t in zip(files, trees)}
  assert {k: v for k, v in found.items() if v} == {}
  # The check works.
  assert _compares_data_source(source_ast.parse("if d.source == 'tfds': pass")[0])
  cfg = config_base.base_config()
  cfg.data.source = 'hdf5'
  with pytest.raises(config_checks.ConfigError, match='data.source'):
    config_checks.validate(cfg)
  with pytest.raises(ValueError, match="unknown config.data.source='hdf5'; registered: digits, npz, tfds"):
    sources.dataset_info(cfg.data)
  cfg.data.source, cfg.data.npz_path = 'npz', str(tmp_path / 'missing.npz')
  with pytest.raises(config_checks.ConfigError, match='npz_path=.*missing.npz.* is not a file'):
    config_checks.validate(cfg)
  cfg.data.source, cfg.data.name = 'tfds', ''
  with pytest.raises(config_checks.ConfigError, match="config.data.name is empty"):
    config_checks.validate(cfg)
