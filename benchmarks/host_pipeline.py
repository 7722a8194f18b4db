"""Host input pipelines on ImageNet-shaped data: tf.data and grain against a flax reference.

Writes a synthetic ImageNet-shaped TFDS data set ('imagenet2012' with made-up contents:
JPEGs of about 400x350 px at quality 90, 1,000 classes; TFRecord and ArrayRecord shards)
of N and of 4N training examples, then measures, for the ImageNet training transform
(random-resized crop to 224 + flip), on the same data, the same cores, in one run:

* examples/s per host core, at 0% and 50% pruned, of the project's tf.data backend, its
  grain backend, and a reference written the way google/flax examples/imagenet/
  input_pipeline.py builds its pipeline (tfds TFRecord reads, shuffle(16 * batch), repeat,
  map(decode_and_crop_jpeg + bicubic resize + flip + normalise, AUTOTUNE), batch,
  prefetch(10), then to the device; at 50% it filters by the mask as one would add). Rate
  = the batches of three epochs but the first ten (startup, and the batches buffers
  filled meanwhile; the reference: as many batches of its endless stream) over their
  time; each batch is on the device (block_until_ready) when counted.
  grain runs one worker process per core (`--workers`), tf.data and the reference their
  thread pools, all pinned to the same cores (`--cores`, sched_setaffinity);
  The mask is EEPrune-like: whole classes pruned, in random order, until half the examples
  are (so the hosts' parts and the classes are pruned unevenly);
* bytes read per epoch (this process's read syscalls, /proc/self/io rchar, over a whole
  epoch with every backend reading in this process: grain with 0 workers);
* start to first batch (pipeline built, first batch on the device; the median of
  `--repeats`) at N and at 4N, and,
  separately, the time to learn the training labels (`pipe.train_labels`, which a run's
  start needs for its masks);
* time to first batch of a resume at 0% and at 90% of an epoch (`train_feeds(first_step)`).

  python benchmarks/host_pipeline.py --json            # N=1024, all cores of the process
  python benchmarks/host_pipeline.py --smoke --json    # seconds: N=48, 64 px

`--json` prints one JSON object last. The tf.data side measures whatever
`eeprune_jax/data/tfdata.py` is: both backends are driven through the `Pipeline` API.
"""

import argparse
import io
import json
import os
import pathlib
import tempfile
import time
from typing import Any, Iterator

import jax
import numpy as np

from eeprune_jax import config_base, parallel
from eeprune_jax import data as data_lib
from eeprune_jax.data import tfdata
from eeprune_jax.data import tfds_write

NUM_CLASSES = 1000
EPOCHS = 3  # timed epochs per throughput figure
SKIP = 10  # batches not timed: the first one (startup) and what buffers filled meanwhile
FLAX_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
FLAX_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


# --- The data set -------------------------------------------------------------------------


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A smooth random picture with grain: JPEG sizes like photos' (tens of kB at q90)."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  channels = []
  for _ in range(3):
    fy, fx, phase = rng.uniform(8, 40), rng.uniform(8, 40), rng.uniform(0, 6)
    channels.append(128 + 60 * np.sin(x / fx + phase) + 50 * np.cos(y / fy - phase))
  image = np.stack(channels, -1) + rng.normal(0, 18, (height, width, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def _jpegs(count: int, seed: int, size: tuple[int, int]) -> list[bytes]:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    h = int(size[1] + rng.integers(-20, 21))
    w = int(size[0] + rng.integers(-20, 21))
    buf = io.BytesIO()
    Image.fromarray(_photo(rng, h, w)).save(buf, format='JPEG', quality=90)
    out.append(buf.getvalue())
  return out


def write_dataset(data_dir: str, n: int, pool: list[bytes], seed: int) -> np.ndarray:
  """'imagenet2012' with n train and min(n, 50) validation examples; returns the train labels.

  Images are drawn from a pool of distinct JPEGs (decoding costs the same as n distinct
  ones; writing stays quick), labels uniformly over the 1,000 classes.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, n)
  picks = rng.integers(0, len(pool), n)

  def examples(count, labs, pk):
    for i in range(count):
      yield {'image': pool[pk[i]], 'label': int(labs[i]), 'file_name': f'{i}.JPEG'}
  tfds_write.write_prepared(data_dir, 'imagenet2012', {
      'train': examples(n, labels, picks),
      'validation': examples(min(50, n), labels, picks)},
      num_shards=max(1, min(16, n // 256)))
  return labels


def eeprune_like_mask(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
  """Whole classes pruned in a random order until `share` of the examples are."""
  keep = np.ones(len(labels), bool)
  target = round(share * len(labels))
  for c in np.random.default_rng(seed).permutation(NUM_CLASSES):
    members = np.flatnonzero((labels == c) & keep)
    room = target - int((~keep).sum())
    if room <= 0:
      break
    keep[members[:room]] = False
  return keep


# --- The flax-style reference ---------------------------------------------------------------


def reference_batches(data_dir: str, batch_size: int, image_size: int, mesh: Any,
                      cores: int, keep: np.ndarray | None) -> Iterator[Any]:
  """Global float32 batches the way flax's examples/imagenet input pipeline makes them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  n = builder.info.splits['train'].num_examples
  per = n // jax.process_count()
  start = jax.process_index() * per
  ds = builder.as_dataset(split=f'train[{start}:{start + per}]', shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  options = tf.data.Options()
  options.threading.private_threadpool_size = cores
  options.threading.max_intra_op_parallelism = 1
  ds = ds.with_options(options)
  if keep is not None:  # the mask, as one would bolt it on
    table = tf.constant(keep)
    ds = ds.enumerate(start).filter(tf.autograph.experimental.do_not_convert(
        lambda i, ex: tf.gather(table, i)))
    ds = ds.map(tf.autograph.experimental.do_not_convert(lambda i, ex: ex))
  ds = ds.repeat().shuffle(16 * batch_size, seed=0)
  mean = tf.constant(FLAX_MEAN, shape=[1, 1, 3])
  std = tf.constant(FLAX_STD, shape=[1, 1, 3])

  def train_view(example):
    data = example['image']
    shape = tf.image.extract_jpeg_shape(data)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
    image = tf.image.resize([image], [image_size, image_size], method='bicubic')[0]
    image = tf.image.random_flip_left_right(tf.reshape(image, [image_size, image_size, 3]))
    return {'image': (image - mean) / std, 'label': example['label']}

  ds = ds.map(train_view, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size // jax.process_count(), drop_remainder=True).prefetch(10)
  for batch in ds.as_numpy_iterator():
    yield parallel.host_to_global(mesh, batch)


# --- Measurements ------------------------------------------------------------------------


def _rchar() -> int:
  with open('/proc/self/io') as f:
    return int(next(line for line in f if line.startswith('rchar:')).split()[1])


def _config(data_dir: str, backend: str, image_size: int, workers: int) -> Any:
  cfg = config_base.base_config().data
  cfg.update(source='tfds', name='imagenet2012', data_dir=data_dir, train_split='train',
             eval_split='validation', image_size=image_size, augment='imagenet',
             backend=backend, grain_workers=workers)
  return cfg


def _pipeline(data_dir: str, backend: str, args: Any, mesh: Any, workers: int) -> Any:
  return data_lib.create_pipeline(_config(data_dir, backend, args.image_size, workers),
                                  batch_size=args.batch_size, eval_batch_size=args.batch_size,
                                  mesh=mesh, seed=0)


def _close(iterator: Any) -> None:
  """Ends a generator pipeline now (grain's workers, tf.data's threads)."""
  close = getattr(iterator, 'close', None)
  if close is not None:
    close()


def _close_pipeline(pipe: Any) -> None:
  """Ends a pipeline's background work (grain streams), so it takes no core from the next."""
  close = getattr(pipe, 'close', None)
  if close is not None:
    close()


def throughput(backend: str, data_dir: str, keep: np.ndarray | None, args: Any,
               mesh: Any, cores: int) -> float:
  """Examples/s per core over EPOCHS epochs, after the first SKIP batches."""
  if backend == 'reference':
    pipe = _pipeline(data_dir, 'tfdata', args, mesh, 0)  # for the step count only
    count = EPOCHS * pipe.steps_per_epoch(keep)
    batches = reference_batches(data_dir, args.batch_size, args.image_size, mesh, cores, keep)
  else:
    pipe = _pipeline(data_dir, backend, args, mesh, args.workers)
    count = EPOCHS * pipe.steps_per_epoch(keep)
    batches = _epochs(pipe, keep)
  skip = max(1, min(SKIP, count // 4))
  for _ in range(skip):
    jax.block_until_ready(next(batches))
  start = time.perf_counter()
  for _ in range(count - skip):
    jax.block_until_ready(next(batches))
  rate = (count - skip) * args.batch_size / (time.perf_counter() - start)
  _close(batches)
  _close_pipeline(pipe)
  return rate / cores


def _epochs(pipe: Any, keep: np.ndarray | None) -> Iterator[Any]:
  for epoch in range(EPOCHS):
    yield from pipe.train_feeds(epoch, keep, 0, 1)


def bytes_per_epoch(backend: str, data_dir: str, keep: np.ndarray | None, args: Any,
                    mesh: Any) -> int:
  """Bytes this process reads for one epoch (pipeline built and run, in this process)."""
  before = _rchar()
  epochs_per_pipeline = tfdata.EPOCHS_PER_PIPELINE
  pipe = _pipeline(data_dir, backend, args, mesh, 0)
  # No reading ahead into the next epoch (which a run would use).
  if backend == 'grain':
    pipe.stream_epochs = 1
  tfdata.EPOCHS_PER_PIPELINE = 1
  for feed in pipe.train_feeds(0, keep, 0, 1):
    jax.block_until_ready(feed)
  read = _rchar() - before
  _close_pipeline(pipe)
  tfdata.EPOCHS_PER_PIPELINE = epochs_per_pipeline
  return read


def first_batch(backend: str, data_dir: str, args: Any, mesh: Any, *,
                resume_at: float = 0.0) -> float:
  """Median over --repeats of the seconds from building the pipeline to its first batch
  on the device (the batch at `resume_at` of the epoch)."""
  return float(np.median([_first_batch_once(backend, data_dir, args, mesh, resume_at)
                          for _ in range(args.repeats)]))


def _first_batch_once(backend: str, data_dir: str, args: Any, mesh: Any,
                      resume_at: float) -> float:
  start = time.perf_counter()
  pipe = _pipeline(data_dir, backend, args, mesh, args.workers)
  step = int(resume_at * pipe.steps_per_epoch(None))
  feeds = pipe.train_feeds(0, None, step, 1)
  jax.block_until_ready(next(iter(feeds)))
  seconds = time.perf_counter() - start
  _close(feeds)
  _close_pipeline(pipe)
  return seconds


def labels_seconds(backend: str, data_dir: str, args: Any, mesh: Any) -> float:
  start = time.perf_counter()
  labels = _pipeline(data_dir, backend, args, mesh, 0).train_labels
  assert len(labels)
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=1024, help='training examples (and 4N).')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--jpeg_size', default='400x350', help='W x H of the JPEGs.')
  parser.add_argument('--cores', type=int, default=0,
                      help='host cores to run on (0: all this process may use).')
  parser.add_argument('--repeats', type=int, default=3,
                      help='start and resume times: the median of this many.')
  parser.add_argument('--workers', type=int, default=-1,
                      help='grain worker processes (-1: one per core).')
  parser.add_argument('--data_dir', default='',
                      help='where to write the data sets (default: a temporary dir).')
  parser.add_argument('--smoke', action='store_true',
                      help='tiny: N=48, 64 px, 96x80 JPEGs, grain without workers.')
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()
  if args.smoke:
    args.n, args.batch_size, args.image_size, args.jpeg_size = 48, 8, 64, '96x80'
    args.workers, args.repeats = 0, 1
  available = sorted(os.sched_getaffinity(0))
  cores = args.cores or len(available)
  os.sched_setaffinity(0, available[:cores])  # inherited by grain's workers
  args.workers = cores if args.workers < 0 else args.workers
  jpeg_size = tuple(int(v) for v in args.jpeg_size.split('x'))
  mesh = parallel.make_mesh()
  root = pathlib.Path(args.data_dir or tempfile.mkdtemp(prefix='host_pipeline_'))
  pool = _jpegs(32 if args.smoke else 96, 0, jpeg_size)
  dirs = {'n': str(root / 'n'), '4n': str(root / '4n')}
  labels = write_dataset(dirs['n'], args.n, pool, seed=1)
  write_dataset(dirs['4n'], 4 * args.n, pool, seed=2)
  masks = {'0': None, '50': eeprune_like_mask(labels, 0.5, seed=3)}
  backends = ('tfdata', 'grain')

  r: dict[str, Any] = {'platform': jax.default_backend(), 'cores': cores,
                       'grain_workers': args.workers, 'n': args.n,
                       'batch_size': args.batch_size, 'image_size': args.image_size,
                       'jpeg_bytes_mean': float(np.mean([len(j) for j in pool]))}
  for at, keep in masks.items():
    for backend in ('reference',) + backends:
      r[f'{backend}_per_core_at_{at}'] = throughput(backend, dirs['n'], keep, args, mesh,
                                                     cores)
  for backend in backends:
    r[f'{backend}_over_reference'] = (r[f'{backend}_per_core_at_0'] /
                                      r['reference_per_core_at_0'])
    r[f'{backend}_over_reference_at_half'] = (r[f'{backend}_per_core_at_50'] /
                                              r['reference_per_core_at_50'])
    full = bytes_per_epoch(backend, dirs['n'], None, args, mesh)
    half = bytes_per_epoch(backend, dirs['n'], masks['50'], args, mesh)
    r[f'{backend}_bytes_read_at_0'], r[f'{backend}_bytes_read_at_50'] = full, half
    r[f'{backend}_bytes_read_at_half'] = half / full
    for size in ('n', '4n'):
      r[f'{backend}_first_batch_s_{size}'] = first_batch(backend, dirs[size], args, mesh)
      r[f'{backend}_labels_s_{size}'] = labels_seconds(backend, dirs[size], args, mesh)
    r[f'startup_4n_over_n_{backend}'] = (r[f'{backend}_first_batch_s_4n'] /
                                         r[f'{backend}_first_batch_s_n'])
    for at in (0.0, 0.9):
      r[f'{backend}_resume_s_at_{round(at * 100)}'] = first_batch(
          backend, dirs['n'], args, mesh, resume_at=at)
    r[f'resume_late_over_early_{backend}'] = (r[f'{backend}_resume_s_at_90'] /
                                              r[f'{backend}_resume_s_at_0'])
  r['grain_bytes_read_at_half'] = r.pop('grain_bytes_read_at_half')
  r['tfdata_bytes_read_at_half'] = r.pop('tfdata_bytes_read_at_half')
  r['dataset_bytes'] = sum(f.stat().st_size for f in pathlib.Path(dirs['n']).rglob(
      '*.tfrecord-*'))

  print(f'host pipelines, ImageNet transform ({args.image_size} px), N={args.n}, '
        f'batch {args.batch_size}, {cores} core(s), platform {r["platform"]}')
  for at in masks:
    line = ', '.join(f'{b} {r[f"{b}_per_core_at_{at}"]:.1f}' for b in ('reference',) + backends)
    print(f'  examples/s per core at {at}% pruned: {line}')
  for b in backends:
    print(f'  {b}: {r[f"{b}_over_reference"]:.2f}x the reference per core at 0% '
          f'({r[f"{b}_over_reference_at_half"]:.2f}x at 50%); bytes read at 50% = '
          f'{r[f"{b}_bytes_read_at_half"]:.2f} of those at 0% '
          f'({r[f"{b}_bytes_read_at_0"] / 1e6:.1f} MB); first batch '
          f'{r[f"{b}_first_batch_s_n"]:.2f} s at N, {r[f"{b}_first_batch_s_4n"]:.2f} s at 4N '
          f'({r[f"startup_4n_over_n_{b}"]:.2f}x; labels {r[f"{b}_labels_s_n"]:.2f} s / '
          f'{r[f"{b}_labels_s_4n"]:.2f} s); resume at 90% / 0% of an epoch '
          f'{r[f"{b}_resume_s_at_90"]:.2f} s / {r[f"{b}_resume_s_at_0"]:.2f} s '
          f'({r[f"resume_late_over_early_{b}"]:.2f}x)')
  if args.json:
    print(json.dumps(r))


if __name__ == '__main__':
  main()
