"""Why the loop dispatches one train step at a time on CPUs: the same step, four ways.

  python benchmarks/cpu_step_loops.py
  python benchmarks/cpu_step_loops.py --smoke   # seconds: ResNet-8, 2 steps per call, 1 round

ResNet-20 at width 0.125 with a mid exit on 8x8 inputs, batch 32 (the CPU config of
`configs/loop_benchmark.py`): `--steps` train steps dispatched one by one, in one
`fori_loop`, in one `scan`, and unrolled in one program; images/s of each and the ratio of
each to one-by-one dispatch. On the CPU backend the looped forms ran 3-4x slower.
"""

import os
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import loop_benchmark  # pylint: disable=g-import-not-at-top,wrong-import-position
from eeprune_jax import models  # pylint: disable=wrong-import-position
from eeprune_jax import parallel  # pylint: disable=wrong-import-position
from eeprune_jax import steps as steps_lib  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer('steps', 10, 'Train steps per timed call.')
flags.DEFINE_integer('rounds', 5, 'Timed calls of each form (after one warm-up call).')
flags.DEFINE_bool('smoke', False, 'Seconds, for tests: every form once, 2 steps per call, '
                  '1 round; figures mean nothing.')

P = jax.sharding.PartitionSpec


def main(argv):
  del argv
  if FLAGS.smoke:  # 2 steps, so the loops and the unrolled program loop
    FLAGS.steps, FLAGS.rounds = 2, 1
  config = loop_benchmark.get_config('cpu')
  if FLAGS.smoke:
    config.model.name = 'resnet8'  # the smoke preset's network: half ResNet-20's compile
  b, k = config.train.batch_size, FLAGS.steps
  mesh = parallel.make_mesh()
  model = models.build_model(config.model, 10, axis_name=parallel.BATCH_AXIS)
  rng = np.random.default_rng(0)
  batch = parallel.host_to_global(mesh, {
      'image': rng.standard_normal((b, 8, 8, 3), np.float32),
      'label': rng.integers(0, 10, b).astype(np.int32),
      'index': np.arange(b, dtype=np.int32), 'valid': np.ones(b, bool)})
  hp = parallel.replicate(mesh, {'lr': np.float32(0.01), 'exit_weights': np.ones(1, np.float32)})
  step = lambda s, bt, h: steps_lib.train_step(s, bt, h)[0]

  def fori(s, bt, h):
    return jax.lax.fori_loop(0, k, lambda _, c: step(c, bt, h), s)

  def scan(s, bt, h):
    return jax.lax.scan(lambda c, _: (step(c, bt, h), None), s, None, length=k)[0]

  def unrolled(s, bt, h):
    for _ in range(k):
      s = step(s, bt, h)
    return s

  specs = dict(in_specs=(P(), P(parallel.BATCH_AXIS), P()), out_specs=P())
  programs = {name: parallel.data_parallel(fn, mesh, **specs)
              for name, fn in (('one by one', step), ('fori_loop', fori), ('scan', scan),
                               ('unrolled', unrolled))}
  state = steps_lib.create_train_state(model, steps_lib.make_optimizer(config.train),
                                       (8, 8, 3), 0, mesh)

  def call(name, state):
    if name == 'one by one':
      for _ in range(k):
        state = programs[name](state, batch, hp)
      return state
    return programs[name](state, batch, hp)

  times = {name: [] for name in programs}
  for name in programs:  # compile and warm up
    state = jax.block_until_ready(call(name, state))
  for _ in range(FLAGS.rounds):  # forms alternate, so load hits them alike
    for name in programs:
      start = time.perf_counter()
      state = jax.block_until_ready(call(name, state))
      times[name].append(time.perf_counter() - start)
  ips = {name: k * b / float(np.median(t)) for name, t in times.items()}
  print(f'{k} train steps per call, batch {b}, {jax.device_count()} x '
        f'{jax.devices()[0].platform}')
  for name, v in ips.items():
    print(f'  {name:<12} {v:10.1f} images/s   {v / ips["one by one"]:.2f} x one by one')



if __name__ == '__main__':
  app.run(main)
