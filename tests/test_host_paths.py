"""The shipped TFDS configs end to end on every backend that reads their data.

`configs/imagenet.py` and `configs/cifar100.py`, shrunk, on TFDS data prepared as real files
(`tfds_files`; not `tfds.testing.mock_data`, whose file-system patch breaks asynchronous
checkpoints, see there): train, prune, checkpoint every epoch, preempted mid-run, resumed
with the same config, finish. A new backend joins by adding its (config, backend) pairs to
`CASES`. The networks are shrunk to a narrow ResNet-8 (the data paths are under test
here; tests/test_models.py covers the shipped networks), so the runs take seconds. They run
in the test's process: a fresh one first imports TensorFlow (8 CPU-seconds here for
`python -c 'import tensorflow'`) and JAX. A real SIGTERM to `python -m eeprune_jax.main`
and a rerun of the same command are tested in tests/test_train.py.
"""

import gc
import json
import pathlib
import runpy
import subprocess
import sys
import threading
import weakref

import ml_collections
import numpy as np
import pytest

from eeprune_jax import config_base
from eeprune_jax import config_checks
from eeprune_jax import data
from eeprune_jax import parallel
from eeprune_jax import train
from eeprune_jax.data import device
from eeprune_jax.data import sources
import tfds_files
import xla_env

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (config, backend): every backend that can read the config's source.
CASES = [('imagenet', 'tfdata'), ('imagenet', 'grain'), ('cifar100', 'tfdata'),
         ('cifar100', 'grain'), ('cifar100', 'device')]

NUM_TRAIN, NUM_EVAL, BATCH = 256, 64, 32
STEPS_PER_EPOCH = NUM_TRAIN // BATCH
SMALL_NETWORK = {'model.name': 'resnet8', 'model.width': 0.125, 'model.stem': 'cifar'}
DATA = {  # config -> (TFDS name, eval split, stored image shape, config overrides)
    'imagenet': ('imagenet2012', 'validation', (48, 40, 3),
                 {**SMALL_NETWORK, 'data.image_size': 32}),
    'cifar100': ('cifar100', 'test', (32, 32, 3), SMALL_NETWORK),
}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """Both data sets, prepared once for the module."""
  root = tmp_path_factory.mktemp('tfds')
  for name, eval_split, shape, _ in DATA.values():
    tfds_files.write_prepared(root, name, {'train': NUM_TRAIN, eval_split: NUM_EVAL},
                              image_shape=shape)
  return root


def _config(config: str, backend: str, data_dir: pathlib.Path) -> ml_collections.ConfigDict:
  """configs/<config>.py shrunk (see the module docstring), on `backend` over `data_dir`."""
  cfg = runpy.run_path(str(ROOT / 'configs' / f'{config}.py'))['get_config']()
  cfg.update_from_flattened_dict({
      'data.data_dir': str(data_dir), 'data.backend': backend, 'data.grain_workers': 0,
      'train.num_epochs': 3, 'train.warmup_epochs': 0.5, 'prune.epoch': 1,
      'train.batch_size': BATCH, 'train.eval_batch_size': BATCH,
      'train.checkpoint_every_epochs': 1, 'train.log_every_steps': 4,
      'train.progress_bar': False, **DATA[config][3]})
  return cfg


def _env() -> dict[str, str]:
  # Two devices: sharded batches at the cost of two.
  return xla_env.env(2, PYTHONPATH=str(ROOT))


def _steps(workdir: pathlib.Path) -> list[int]:
  checkpoints = workdir / 'checkpoints'
  if not checkpoints.exists():
    return []
  return sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())


@pytest.mark.parametrize('config,backend', CASES)
def test_train_prune_checkpoint_preempt_resume(config, backend, data_dir, tmp_path, monkeypatch,
                                                caplog):
  """Preempted at the first stop check after the first epoch's checkpoint (the pruning
  round, its scoring pass and the next epoch still ahead); the same config then finishes
  the run, and it has trained every epoch's steps once."""
  prefetch = lambda: {t for t in threading.enumerate() if t.name == 'grain-device-prefetch'}
  before = prefetch()  # other tests' pipelines of this process may still be reading
  workdir = tmp_path / 'run'
  monkeypatch.setattr(train.Preemption, 'should_stop',
                      lambda self, step: step > STEPS_PER_EPOCH)
  first = train.train_and_evaluate(_config(config, backend, data_dir), str(workdir))
  assert first['preempted'] and 'Preempted at step' in caplog.text
  assert not (workdir / 'summary.json').exists()
  stopped_at = _steps(workdir)[-1]
  assert stopped_at == first['step'] > STEPS_PER_EPOCH

  monkeypatch.undo()
  train.train_and_evaluate(_config(config, backend, data_dir), str(workdir))
  summary = json.loads((workdir / 'summary.json').read_text())
  history = summary['history']
  assert [r['epoch'] for r in history] == [1, 2, 3]
  assert len(summary['pruning']['rounds']) == 1
  # (Random images: imagenet's early exit finds eligible examples, cifar100's may not.)
  kept = summary['pruning']['num_kept']
  assert [r['kept'] for r in history] == [NUM_TRAIN, kept, kept]
  # Every epoch's steps trained once: the preempted epoch's record counts only the steps
  # after the resume, and the two runs together took exactly the schedule's steps.
  pruned_steps = kept // BATCH
  assert history[1]['steps'] == pruned_steps - (stopped_at - STEPS_PER_EPOCH)
  assert history[-1]['step'] == STEPS_PER_EPOCH + 2 * pruned_steps
  assert summary['ledger']['train_steps'] == history[-1]['step']
  assert _steps(workdir)[-1] == history[-1]['step']
  # Both runs, the preempted one too, ended their pipeline's background reading.
  assert not prefetch() - before


def test_device_backend_refuses_data_larger_than_its_memory_share(monkeypatch):
  """Refused before a single image is decoded, naming both host backends; the digits'
  1437 + 360 images of 32x32x1 (1.75 MiB) need a share of over 0.58 of 3 MiB."""
  cfg = config_base.base_config()
  cfg.data.device_memory_share = 0.5
  monkeypatch.setattr(device, 'device_memory_bytes', lambda: 3 * 2**20)
  load_arrays = sources.load_arrays

  def no_decoding(*args):
    raise AssertionError('decoded data before refusing it')

  monkeypatch.setattr(sources, 'load_arrays', no_decoding)
  make = lambda: data.create_pipeline(cfg.data, batch_size=32, eval_batch_size=64,
                                      mesh=parallel.make_mesh(), seed=0)
  with pytest.raises(ValueError) as e:
    make()
  msg = str(e.value)
  assert 'config.data.device_memory_share=0.5' in msg and 'MiB' in msg
  assert '--config.data.backend=tfdata' in msg and '--config.data.backend=grain' in msg
  monkeypatch.setattr(sources, 'load_arrays', load_arrays)
  cfg.data.device_memory_share = 0.6
  assert make().steps_per_epoch(None) == 1437 // 32
  assert device.device_memory_bytes() > 2**20  # a real capacity where nothing is patched


def test_device_memory_share_is_validated():
  cfg = config_base.base_config()
  cfg.data.device_memory_share = 0.0
  with pytest.raises(config_checks.ConfigError, match='data.device_memory_share=0.0'):
    config_checks.validate(cfg)


def test_tfdata_resume_skips_batches_before_decoding_them():
  """A resume at step 10 yields the uninterrupted epoch's batches 10.. and does not decode
  the records of the batches it skips (augmentation on: the batches depend on it)."""
  import jax  # pylint: disable=g-import-not-at-top
  from eeprune_jax.data import tfdata  # pylint: disable=g-import-not-at-top
  cfg = config_base.base_config().data
  cfg.backend, cfg.train_split, cfg.augment = 'tfdata', 'train[:640]', 'cifar'
  pipe = data.create_pipeline(cfg, batch_size=32, eval_batch_size=64,
                              mesh=parallel.make_mesh(), seed=3)
  mask = np.arange(640) % 3 != 0
  steps = pipe.steps_per_epoch(mask)
  assert steps == 13
  full = [jax.device_get(b) for b in pipe.train_feeds(2, mask, 0, 1)]
  tf = tfdata._tf()  # pylint: disable=protected-access
  decoded = tf.Variable(0, dtype=tf.int64)
  preprocess = pipe._preprocess  # pylint: disable=protected-access

  def counting(*args, **kwargs):
    with tf.control_dependencies([decoded.assign_add(1)]):
      return {k: tf.identity(v) for k, v in preprocess(*args, **kwargs).items()}

  pipe._preprocess = counting  # pylint: disable=protected-access
  resumed = [jax.device_get(b) for b in pipe.train_feeds(2, mask, 10, 1)]
  assert len(resumed) == steps - 10
  for a, b in zip(full[10:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  # Decoding the skipped batches too would take all 13 x 32 records; the resume decodes its
  # 3 batches and what tf.data reads ahead (it varies, up to a few batches).
  assert (steps - 10) * 32 <= int(decoded.numpy()) < steps * 32


# One process of a two-process tf.data run: the indices of the rows it feeds the train
# program per epoch (a tf.data feed is the batch; this process holds its rows).
_TFDATA_HOST = """
import json, sys
import jax
jax.config.update('jax_cpu_collectives_implementation', 'gloo')
port, pid, out, tfds_dir, workdir = sys.argv[1:6]
pid = int(pid)
jax.distributed.initialize(f'localhost:{port}', 2, pid)
import numpy as np
from eeprune_jax import config_base, data, parallel
cfg = config_base.base_config().data
cfg.backend, cfg.train_split, cfg.augment = 'tfdata', 'train[:400]', 'none'
pipe = data.create_pipeline(cfg, batch_size=16, eval_batch_size=16, mesh=parallel.make_mesh(),
                            seed=0)
mask = np.ones(400, bool)
mask[200:] = np.arange(200) % 10 == 0  # process 1's range [200, 400) keeps 20 of 200
rows = {epoch: np.concatenate([np.concatenate([np.asarray(s.data)
                                               for s in b['index'].addressable_shards])
                               for b in pipe.train_feeds(epoch, mask, 0, 1)]).tolist()
        for epoch in (0, 1)}
# Labels of a TFDS split: each process reads its range, the two gather them.
cfg = config_base.base_config().data
cfg.source, cfg.name, cfg.data_dir, cfg.backend = 'tfds', 'cifar100', tfds_dir, 'tfdata'
tfds_pipe = data.create_pipeline(cfg, batch_size=16, eval_batch_size=16,
                                 mesh=parallel.make_mesh(), seed=0, workdir=workdir)
with open(out, 'w') as f:
  json.dump({'steps': pipe.steps_per_epoch(mask), 'rows': rows,
             'labels': tfds_pipe.train_labels.tolist()}, f)
"""


def test_tfdata_with_uneven_kept_counts_across_two_processes(tmp_path):
  """What tfdata.py's docstring says: with 90% of process 1's range pruned, both processes
  yield kept // batch batches; process 0 trains a fresh subset of its kept examples each
  epoch, process 1 repeats each of its kept examples floor or ceil of the ratio times.
  Also: the training labels of a TFDS split, read per process range and gathered."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  tfds_files.write_prepared(tmp_path / 'tfds', 'cifar100', {'train': 50, 'test': 10},
                            image_shape=(32, 32, 3), classes=9, shards=3)
  env = dict(_env(), XLA_FLAGS=xla_env.flags(1))
  procs = [subprocess.Popen([sys.executable, '-c', _TFDATA_HOST, str(port), str(i),
                             str(tmp_path / f'host{i}.json'), str(tmp_path / 'tfds'),
                             str(tmp_path / 'run')], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  hosts = [json.loads((tmp_path / f'host{i}.json').read_text()) for i in range(2)]
  steps = (200 + 20) // 16
  assert hosts[0]['steps'] == hosts[1]['steps'] == steps
  per_host = steps * 8  # local batch 8 of a global 16
  for epoch in ('0', '1'):
    rows0, rows1 = (np.asarray(h['rows'][epoch]) for h in hosts)
    assert len(rows0) == len(rows1) == per_host
    # Process 0: distinct kept examples of its range, 200 - 104 = 96 of them left out.
    assert len(set(rows0)) == per_host and rows0.min() >= 0 and rows0.max() < 200
    # Process 1: its 20 kept examples, each 104 // 20 = 5 or 6 times.
    counts = np.bincount(rows1, minlength=400)
    assert set(np.flatnonzero(counts)) == set(range(200, 400, 10))
    assert set(counts[counts > 0]) <= {per_host // 20, per_host // 20 + 1}
  # A fresh subset each epoch on process 0.
  assert set(hosts[0]['rows']['0']) != set(hosts[0]['rows']['1'])
  cfg = config_base.base_config().data
  cfg.source, cfg.name, cfg.data_dir = 'tfds', 'cifar100', str(tmp_path / 'tfds')
  labels = _canonical_labels(cfg).tolist()
  assert hosts[0]['labels'] == hosts[1]['labels'] == labels
  assert np.load(tmp_path / 'run' / 'train_labels.npy').tolist() == labels


def _canonical_labels(cfg) -> np.ndarray:
  """The train labels as TFDS reads them one shard file after another, record by record:
  the canonical order."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = tfds.builder(cfg.name, data_dir=cfg.data_dir).as_dataset(
      split=cfg.train_split, shuffle_files=False,
      read_config=tfds.ReadConfig(interleave_cycle_length=1))
  return np.array([ex['label'] for ex in ds.as_numpy_iterator()], np.int32)


def test_tfdata_reads_the_labels_once_and_a_resume_reuses_them(tmp_path, monkeypatch):
  """The stream reads the 3 shard files interleaved (not one after another) and indexes
  every record once; labels read that way match the canonical one-file-at-a-time read; the
  workdir keeps them, so a second pipeline over the same workdir reads no record."""
  tfds_files.write_prepared(tmp_path / 'tfds', 'cifar100', {'train': 96, 'test': 32},
                            image_shape=(32, 32, 3), classes=7, shards=3)
  cfg = config_base.base_config().data
  cfg.source, cfg.name, cfg.backend = 'tfds', 'cifar100', 'tfdata'
  cfg.data_dir = str(tmp_path / 'tfds')
  make = lambda: data.create_pipeline(cfg, batch_size=16, eval_batch_size=16,
                                      mesh=parallel.make_mesh(), seed=0,
                                      workdir=tmp_path / 'run')
  order = [int(i) for i, _, _ in sources.stream(cfg, 'train', 8, 96).as_numpy_iterator()]
  assert sorted(order) == list(range(8, 96)) and order != sorted(order)
  labels = make().train_labels
  np.testing.assert_array_equal(labels, _canonical_labels(cfg))
  assert len(set(labels)) == 7 and labels.dtype == np.int32
  assert (tmp_path / 'run' / 'train_labels.npy').exists()

  def no_reading(*args):
    raise AssertionError('read the split again')

  monkeypatch.setattr(sources.tfds.Tfds, 'labels', no_reading)
  np.testing.assert_array_equal(make().train_labels, labels)


def test_tfdata_draws_a_file_order_per_epoch_and_bounds_its_shuffle_buffer(tmp_path,
                                                                           monkeypatch):
  """The stream's 6 shard files come in an order drawn from the file seed (the same seed,
  the same order); the training shuffle buffer holds SHUFFLE_BUFFER_BYTES of records, at
  least 16 local batches, at most the host's kept examples."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from eeprune_jax.data import tfdata  # pylint: disable=g-import-not-at-top
  tfds_files.write_prepared(tmp_path / 'tfds', 'cifar100', {'train': 96, 'test': 32},
                            image_shape=(32, 32, 3), classes=7, shards=6)
  cfg = config_base.base_config().data
  cfg.source, cfg.name, cfg.backend = 'tfds', 'cifar100', 'tfdata'
  cfg.data_dir = str(tmp_path / 'tfds')

  def file_order(seed):
    indices = [int(i) for i, _, _ in sources.stream(
        cfg, 'train', 0, 96, tf.constant([seed, 0], tf.int64)).as_numpy_iterator()]
    assert sorted(indices) == list(range(96))
    return list(dict.fromkeys(i // 16 for i in indices))  # files by first appearance
  orders = [tuple(file_order(seed)) for seed in range(4)]
  assert tuple(file_order(2)) == orders[2] and len(set(orders)) > 1
  assert all(sorted(o) == list(range(6)) for o in orders)
  pipe = data.create_pipeline(cfg, batch_size=8, eval_batch_size=16,
                              mesh=parallel.make_mesh(), seed=0)
  assert pipe.shuffle_buffer(96) == 96  # 96 records of ~3 kB: all of them
  record = sources.mean_record_bytes(cfg, 'train')
  assert 2_000 < record < 5_000  # the metadata's bytes per encoded 32x32 PNG record
  monkeypatch.setattr(tfdata, 'SHUFFLE_BUFFER_BYTES', 200.5 * record)
  assert pipe.shuffle_buffer(1000) == 200 and pipe.shuffle_buffer(96) == 96
  monkeypatch.setattr(tfdata, 'SHUFFLE_BUFFER_BYTES', 1)
  assert pipe.shuffle_buffer(1000) == 16 * 8 and pipe.shuffle_buffer(10) == 10


def test_tfdata_feeds_run_one_batch_ahead(monkeypatch):
  """The loop's feeds are the epoch's batches in order, each uploaded before the previous
  one is handed out (device prefetch), uint8 until local_batch normalises them."""
  import jax  # pylint: disable=g-import-not-at-top
  cfg = config_base.base_config().data
  cfg.backend, cfg.train_split = 'tfdata', 'train[:256]'
  pipe = data.create_pipeline(cfg, batch_size=32, eval_batch_size=64,
                              mesh=parallel.make_mesh(), seed=0)
  uploads = []
  host_to_global = parallel.host_to_global

  def counting(mesh, batch):
    uploads.append(batch['index'].copy())
    return host_to_global(mesh, batch)

  monkeypatch.setattr(parallel, 'host_to_global', counting)
  handed = []
  for feed in pipe.train_feeds(1, None, 0, 1):
    assert feed['image'].dtype == np.uint8
    handed.append(np.asarray(jax.device_get(feed['index'])))
    assert len(uploads) == min(len(handed) + 1, 8)
  monkeypatch.undo()
  # The host pipeline's own batches, read without the device prefetch.
  full = [b['index'] for b in pipe._train_host(1, None, 0)]  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.stack(handed), np.stack(full))


def test_tfdata_imagenet_crop_decodes_only_the_window_with_the_same_pixels(tmp_path):
  """The fused decode_and_crop_jpeg training crop of stored JPEGs yields the batches of
  decoding the whole image and cropping it (up to JPEG decoding at the window's edge)."""
  import jax  # pylint: disable=g-import-not-at-top
  tfds_files.write_prepared(tmp_path, 'imagenet2012', {'train': 64, 'validation': 16},
                            image_shape=(60, 44, 3))
  cfg = config_base.base_config().data
  cfg.source, cfg.name, cfg.backend = 'tfds', 'imagenet2012', 'tfdata'
  cfg.data_dir = str(tmp_path)
  cfg.eval_split, cfg.augment, cfg.image_size = 'validation', 'imagenet', 24
  pipe = data.create_pipeline(cfg, batch_size=16, eval_batch_size=16,
                              mesh=parallel.make_mesh(), seed=0)
  assert pipe.fused_jpeg_crop
  fused = [jax.device_get(b) for b in pipe.train_feeds(0, None, 0, 1)]
  pipe.fused_jpeg_crop = False
  whole = [jax.device_get(b) for b in pipe.train_feeds(0, None, 0, 1)]
  assert len(fused) == len(whole) == 4
  diffs = []
  for a, b in zip(fused, whole):
    for k in ('index', 'label', 'valid'):
      np.testing.assert_array_equal(a[k], b[k])
    diffs.append(np.abs(a['image'].astype(int) - b['image'].astype(int)))
  diffs = np.concatenate(diffs)
  # The same windows: libjpeg decoding a window alone differs from the whole decode only
  # near its edges, by a few levels (measured: 1.6% of values, at most 8 of 255, mean
  # 0.03, on these noise images); another window of them would differ by ~20 on average.
  assert diffs.mean() < 0.1 and diffs.max() <= 16


def test_tfdata_builds_one_training_pipeline_per_mask():
  """Consecutive epochs of one mask come from one tf.data pipeline, with the batches fresh
  pipelines give; a new mask, or an epoch stopped part-way, starts a new one."""
  import jax  # pylint: disable=g-import-not-at-top
  cfg = config_base.base_config().data
  cfg.backend, cfg.train_split, cfg.augment = 'tfdata', 'train[:320]', 'cifar'
  make = lambda: data.create_pipeline(cfg, batch_size=32, eval_batch_size=64,
                                      mesh=parallel.make_mesh(), seed=1)
  epoch_rows = lambda p, e, m: [np.asarray(jax.device_get(b['index']))
                                for b in p.train_feeds(e, m, 0, 1)]
  pipe, built = make(), []
  build = pipe._epochs_dataset  # pylint: disable=protected-access
  record = lambda *a: built.append(a[1:]) or build(*a)
  pipe._epochs_dataset = record  # pylint: disable=protected-access
  mask = np.arange(320) % 5 != 0
  for epoch in range(3):
    np.testing.assert_array_equal(epoch_rows(pipe, epoch, mask), epoch_rows(make(), epoch, mask))
  assert built == [(0, 0, 8)]
  epoch_rows(pipe, 3, None)
  feeds = pipe.train_feeds(4, None, 0, 1)
  next(feeds)
  feeds.close()  # stopped after one batch (preemption, a fractional last epoch)
  np.testing.assert_array_equal(epoch_rows(pipe, 4, None), epoch_rows(make(), 4, None))
  # Epoch 4 first continued the all-kept pipeline of epoch 3; after its stop, a new one.
  assert built == [(0, 0, 8), (3, 0, 10), (4, 0, 10)]


def test_tfdata_close_frees_the_live_training_pipeline_at_once():
  """close() frees the mask's live tf.data iterator itself, not at a later garbage
  collection, whose pass the iterator's destructor can stall while its threads end."""
  cfg = config_base.base_config().data
  cfg.backend, cfg.train_split = 'tfdata', 'train[:64]'
  pipe = data.create_pipeline(cfg, batch_size=32, eval_batch_size=64,
                              mesh=parallel.make_mesh(), seed=0)
  assert len(list(pipe.train_feeds(0, None, 0, 1))) == 2  # the pipeline stays for epoch 1
  live = weakref.ref(pipe._live.iterator)  # pylint: disable=protected-access
  gc.disable()
  try:
    pipe.close()
    assert live() is None
  finally:
    gc.enable()
