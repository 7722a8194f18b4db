"""Step throughput as ratios against references measured in the same run.

  python benchmarks/steps.py --model=resnet18 --width=0.5 --batch_size=128
  python benchmarks/steps.py --smoke    # seconds: ResNet-8 w0.125 at 8x8, batch 8, 1 round

Prints, for one network:
  scoring step / plain jitted forward pass of the same network  (target >= 0.9)
  train step with exits / train step of the same network without exits  (target <= 1.10)
as images/s and ratios. Calls of the two sides of a ratio alternate, so load on the machine
hits both alike. Inputs are random: this measures compute, not the input pipeline
(benchmarks/input_pipeline.py does that).
"""

import time

from absl import app
from absl import flags
import jax
import numpy as np

from eeprune_jax import config_base
from eeprune_jax import models
from eeprune_jax import parallel
from eeprune_jax import scoring
from eeprune_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'resnet18', 'Model name.')
flags.DEFINE_string('stem', 'cifar', 'Stem: cifar or imagenet.')
flags.DEFINE_float('width', 0.5, 'Width multiplier.')
flags.DEFINE_string('exits', 'mid', 'Exits of the multi-exit network.')
flags.DEFINE_string('exit_head', 'linear', 'Exit head type.')
flags.DEFINE_string('dtype', 'float32', 'Compute dtype.')
flags.DEFINE_integer('image_size', 32, 'Input size.')
flags.DEFINE_integer('num_classes', 10, 'Classes.')
flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
flags.DEFINE_integer('rounds', 10, 'Timed calls of each side (after warm-up).')
flags.DEFINE_bool('smoke', False, 'Seconds, for tests: every path once at the least size '
                  '(ResNet-20 w0.125 at 8x8, batch 8, 1 round); figures mean nothing.')


def _config(exits: str):
  config = config_base.base_config()
  m = config.model
  m.name, m.stem, m.width, m.exits, m.exit_head, m.dtype = (
      FLAGS.model, FLAGS.stem, FLAGS.width, exits, FLAGS.exit_head, FLAGS.dtype)
  return config


def _alternate(fns: dict[str, callable], rounds: int) -> dict[str, float]:
  """Median seconds per call of each function, calls interleaved."""
  for fn in fns.values():  # compile and warm up
    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for k, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[k].append(time.perf_counter() - start)
  return {k: float(np.median(v)) for k, v in times.items()}


def main(argv):
  del argv
  if FLAGS.smoke:
    FLAGS.model, FLAGS.width, FLAGS.image_size, FLAGS.batch_size, FLAGS.rounds = (
        'resnet8', 0.125, 8, 8, 1)
  mesh = parallel.make_mesh()
  shape = (FLAGS.image_size, FLAGS.image_size, 3)
  rng = np.random.default_rng(0)
  batch = parallel.host_to_global(mesh, {
      'image': rng.standard_normal((FLAGS.batch_size, *shape), np.float32),
      'label': rng.integers(0, FLAGS.num_classes, FLAGS.batch_size).astype(np.int32),
      'index': np.arange(FLAGS.batch_size, dtype=np.int32),
      'valid': np.ones(FLAGS.batch_size, bool)})
  tx = train.make_optimizer(config_base.base_config().train)
  P = jax.sharding.PartitionSpec
  repl, sharded = P(), P(parallel.BATCH_AXIS)

  states, train_steps = {}, {}
  for name, exits in (('exits', FLAGS.exits), ('no_exits', 'none')):
    config = _config(exits)
    model = models.build_model(config.model, FLAGS.num_classes, axis_name=parallel.BATCH_AXIS)
    states[name] = train.create_train_state(model, tx, shape, 0, mesh)
    num_exits = len(models.exit_blocks(config.model))
    hparams = {'lr': np.float32(0.01), 'exit_weights': np.ones(num_exits, np.float32)}
    step = parallel.data_parallel(train.train_step, mesh, in_specs=(repl, sharded, repl),
                                  out_specs=(repl, repl, sharded))
    train_steps[name] = (lambda s=states[name], f=step, h=hparams: f(s, batch, h))

  state = states['exits']
  # The step `loop.Programs.score` traces per batch, on its own: compute, not the pass.
  score = parallel.data_parallel(scoring.score_step, mesh, in_specs=(repl, sharded),
                                 out_specs=sharded)

  def forward(state, batch):
    return state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                          batch['image'], train=False)[-1]
  p_forward = parallel.data_parallel(forward, mesh, in_specs=(repl, sharded), out_specs=sharded)

  infer = _alternate({'score': lambda: score(state, batch),
                      'forward': lambda: p_forward(state, batch)}, FLAGS.rounds)
  fit = _alternate(train_steps, FLAGS.rounds)
  ips = lambda s: FLAGS.batch_size / s
  print(f'{FLAGS.model} ({FLAGS.stem}, width {FLAGS.width}, exits {FLAGS.exits!r}, '
        f'{FLAGS.exit_head} head, {FLAGS.dtype}), batch {FLAGS.batch_size}, '
        f'{jax.device_count()} x {jax.devices()[0].platform}')
  print(f"  plain forward pass        {ips(infer['forward']):10.1f} images/s")
  print(f"  scoring step              {ips(infer['score']):10.1f} images/s")
  print(f"  train step, no exits      {ips(fit['no_exits']):10.1f} images/s")
  print(f"  train step, with exits    {ips(fit['exits']):10.1f} images/s")
  print(f"  scoring / forward throughput:            {infer['forward'] / infer['score']:.3f}"
        '  (target >= 0.9)')
  print(f"  train step time, exits / no exits:       {fit['exits'] / fit['no_exits']:.3f}"
        '  (target <= 1.10)')


if __name__ == '__main__':
  app.run(main)
