"""Input pipeline throughput against what a ResNet-18 train step consumes.

Prints, for each backend, training-mode examples/s on CIFAR-10 (augment 'cifar'),
next to the examples/s of a jitted SGD train step of the CIFAR ResNet-18 on the same
devices in the same run. ratio = input / train: below ~1.5 the input is (close to) the
bottleneck.

  python benchmarks/input_pipeline.py --data_dir ../shared/data/tfds --steps 300

The train step is a minimal stand-in (cross-entropy summed over all exits, SGD with
momentum); the project's own train step may cost a little more.
"""

import argparse
import pathlib
import sys
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from eeprune_jax import config_base, parallel
from eeprune_jax import data as data_lib

_DEFAULT_DATA_DIR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'tfds'


def _batches_forever(pipe: data_lib.Pipeline) -> Iterator[dict[str, jax.Array]]:
  epoch = 0
  while True:
    yield from pipe.train_epoch(epoch, None)
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
  """Examples/s of a jitted SGD step of the configured model on random inputs."""
  from eeprune_jax import models  # pylint: disable=g-import-not-at-top
  model = models.build_model(cfg.model, num_classes=10)
  shape = (batch_size,) + tuple(data_lib.dataset_info(cfg.data).image_shape)
  rng = np.random.default_rng(0)
  batch = parallel.host_to_global(mesh, {
      'image': rng.standard_normal(shape, np.float32),
      'label': rng.integers(0, 10, batch_size).astype(np.int32)})
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
      jnp.zeros((1,) + shape[1:], jnp.float32))
  variables = jax.device_put(variables, parallel.replicated(mesh))
  params, state = variables['params'], {k: v for k, v in variables.items() if k != 'params'}
  momentum = jax.tree.map(jnp.zeros_like, params)
  lr, mu = 0.1, 0.9

  @jax.jit
  def train_step(params, state, momentum, batch):
    def loss_fn(p):
      logits, new_state = model.apply({'params': p, **state}, batch['image'], train=True,
                                      mutable=['batch_stats'])
      onehot = jax.nn.one_hot(batch['label'], 10)
      loss = sum(-jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(l), -1)) for l in logits)
      return loss, new_state
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    momentum = jax.tree.map(lambda m, g: mu * m + g, momentum, grads)
    params = jax.tree.map(lambda p, m: p - lr * m, params, momentum)
    return params, new_state, momentum, loss

  carry = [params, state, momentum]

  def step():
    carry[0], carry[1], carry[2], loss = train_step(*carry, batch)
    return loss

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
  args = parser.parse_args(argv)

  cfg = config_base.base_config()
  cfg.data.source, cfg.data.name, cfg.data.data_dir = 'tfds', 'cifar10', args.data_dir
  cfg.data.augment, cfg.data.image_size = 'cifar', 32
  cfg.model.name, cfg.model.stem, cfg.model.width = 'resnet18', 'cifar', args.width
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
  print(f'{f"train resnet18 w={args.width:g}":<22}{train_eps:>14,.0f}{"":>10}{1.0:>13.2f}')


if __name__ == '__main__':
  main(sys.argv[1:])
