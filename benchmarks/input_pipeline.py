"""Input pipeline throughput against what a ResNet-18 train step consumes.

Prints, for each backend, training-mode examples/s on CIFAR-10 (augment 'cifar'),
next to the examples/s of a jitted SGD train step of the CIFAR ResNet-18 on the same
devices in the same run. ratio = input / train: below ~1.5 the input is (close to) the
bottleneck.

  python benchmarks/input_pipeline.py --data_dir ../shared/data/tfds --steps 300
  python benchmarks/input_pipeline.py --smoke   # seconds: 256 examples, batch 8, ResNet-8

The train step is the project's own (`train.train_step`, mid exit, on random inputs).
Without TensorFlow (e.g. a GPU box with JAX only) read the JPEG copy instead:
  python benchmarks/input_pipeline.py --npz_path=.../cifar10_jpeg.npz --backends=device
"""

import argparse
import pathlib
import sys
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np

from eeprune_jax import config_base, parallel
from eeprune_jax import data as data_lib

_DEFAULT_DATA_DIR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'tfds'


def _batches_forever(pipe: data_lib.Pipeline) -> Iterator[dict[str, jax.Array]]:
  """Training batches epoch after epoch, one program call each, read as the train program
  reads them: `local_batch` of its feed (the device backend gathers and augments there;
  the host backends' feed is the batch, normalised there)."""
  P = jax.sharding.PartitionSpec
  batch_of = parallel.data_parallel(
      lambda feed, step, epoch: pipe.reader.local_batch(feed, step, epoch, train=True),
      pipe.mesh, in_specs=(pipe.reader.feed_specs(), P(), P()),
      out_specs=P(parallel.BATCH_AXIS))
  epoch = 0
  while True:
    for step, feed in enumerate(pipe.train_feeds(epoch, None, 0, 1)):
      yield batch_of(feed, np.int32(step), np.int32(epoch))
    epoch += 1


def _time_steps(step: Callable[[], Any], warmup: int, steps: int) -> float:
  """Seconds per step of `step` (blocking on its result) after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(step())
  start = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(step())
  return (time.perf_counter() - start) / steps


def bench_input(cfg: Any, backend: str, batch_size: int, steps: int, warmup: int,
                mesh: Any) -> tuple[float, float]:
  """(setup seconds, examples/s) of one backend in training mode."""
  cfg.data.backend = backend
  start = time.perf_counter()
  pipe = data_lib.create_pipeline(cfg.data, batch_size=batch_size,
                                  eval_batch_size=batch_size, mesh=mesh, seed=0)
  it = _batches_forever(pipe)
  first = next(it)
  jax.block_until_ready(first)
  setup = time.perf_counter() - start
  sec = _time_steps(lambda: next(it), warmup, steps)
  return setup, batch_size / sec


def bench_train_step(cfg: Any, batch_size: int, steps: int, warmup: int, mesh: Any
                     ) -> float:
  """Examples/s of the project's data-parallel train step on random inputs."""
  from eeprune_jax import models, train  # pylint: disable=g-import-not-at-top
  P = jax.sharding.PartitionSpec
  info = data_lib.dataset_info(cfg.data)
  model = models.build_model(cfg.model, info.num_classes, axis_name=parallel.BATCH_AXIS)
  state = train.create_train_state(model, train.make_optimizer(cfg.train), info.image_shape,
                                   0, mesh)
  rng = np.random.default_rng(0)
  batch = parallel.host_to_global(mesh, {
      'image': rng.standard_normal((batch_size, *info.image_shape), np.float32),
      'label': rng.integers(0, info.num_classes, batch_size).astype(np.int32),
      'index': np.arange(batch_size, dtype=np.int32)})
  hparams = {'lr': np.float32(0.1),
             'exit_weights': np.ones(len(models.exit_blocks(cfg.model)), np.float32)}
  step_fn = parallel.data_parallel(train.train_step, mesh,
                                   in_specs=(P(), P(parallel.BATCH_AXIS), P()),
                                   out_specs=(P(), P(), P(parallel.BATCH_AXIS)),
                                   donate_argnums=0)
  carry = [state]

  def step():
    carry[0], metrics, _ = step_fn(carry[0], batch, hparams)
    return metrics

  return batch_size / _time_steps(step, warmup, steps)


def main(argv: list[str] | None = None) -> None:
  """Runs the benchmark and prints the table."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default=str(_DEFAULT_DATA_DIR),
                      help='TFDS data dir holding a prepared cifar10.')
  parser.add_argument('--steps', type=int, default=300, help='timed input steps.')
  parser.add_argument('--train_steps', type=int, default=0,
                      help='timed train steps (0 = same as --steps).')
  parser.add_argument('--warmup', type=int, default=10)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--width', type=float, default=1.0, help='ResNet-18 width multiplier.')
  parser.add_argument('--backends', default='device,tfdata')
  parser.add_argument('--npz_path', default='',
                      help='read CIFAR-10 from this JPEG .npz instead of TFDS (no TF needed).')
  parser.add_argument('--smoke', action='store_true',
                      help='seconds, for tests: the first 256 training and test examples, '
                      'batch 8, 2 input steps and 1 train step (ResNet-8 w0.125); figures '
                      'mean nothing.')
  args = parser.parse_args(argv)
  if args.smoke:
    args.steps, args.train_steps, args.warmup, args.batch_size, args.width = 2, 1, 1, 8, 0.125

  cfg = config_base.base_config()
  cfg.data.source, cfg.data.name, cfg.data.data_dir = 'tfds', 'cifar10', args.data_dir
  if args.npz_path:
    cfg.data.source, cfg.data.npz_path = 'npz', args.npz_path
  cfg.data.augment, cfg.data.image_size = 'cifar', 32
  cfg.model.name, cfg.model.stem, cfg.model.width = 'resnet18', 'cifar', args.width
  if args.smoke:  # the device backend loads its whole splits first
    cfg.data.train_split, cfg.data.eval_split = 'train[:256]', 'test[:256]'
    cfg.model.name = 'resnet8'  # compiles in a fraction of ResNet-18's time
  mesh = parallel.make_mesh()
  print(f'devices: {jax.device_count()} x {jax.devices()[0].device_kind}, '
        f'batch {args.batch_size}, data {args.data_dir}', flush=True)

  rows = []
  for backend in args.backends.split(','):
    setup, eps = bench_input(cfg, backend, args.batch_size, args.steps, args.warmup, mesh)
    rows.append((f'input[{backend}]', setup, eps))
    print(f'  {rows[-1][0]}: {eps:,.0f} examples/s (setup {setup:.1f}s)', flush=True)
  train_eps = bench_train_step(cfg, args.batch_size, args.train_steps or args.steps,
                               args.warmup, mesh)
  print(f'  train step: {train_eps:,.0f} examples/s', flush=True)

  print()
  print(f'{"what":<22}{"examples/s":>14}{"setup s":>10}{"input/train":>13}')
  for name, setup, eps in rows:
    print(f'{name:<22}{eps:>14,.0f}{setup:>10.1f}{eps / train_eps:>13.2f}')
  print(f'{f"train {cfg.model.name} w={args.width:g}":<22}{train_eps:>14,.0f}{"":>10}{1.0:>13.2f}')


if __name__ == '__main__':
  main(sys.argv[1:])
