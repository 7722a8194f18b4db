"""The training loop against its own step, and the step against a plain Flax step.

  python benchmarks/loop.py                      # CPU default: configs/loop_benchmark.py:cpu
  python benchmarks/loop.py --preset=gpu --npz_path=cifar10_jpeg.npz --json
  python benchmarks/loop.py --smoke --json       # seconds: the 'smoke' preset, 2 rounds

In one run, for one config (`configs/loop_benchmark.py`):
  * the bare train step (the project's `steps.train_step` under jit + shard_map, as the
    loop runs it) on a fixed on-device batch, dispatched once per step, and a plain
    jitted Flax step of the same
    network written without the project's machinery (single-device jit, integer-label
    cross-entropy, optax SGD): step / plain (target >= 0.95), and a breakdown of what the
    project's step adds (shard_map with cross-device BatchNorm, per-example outputs,
    one-hot label smoothing, the example-weight gather);
  * the real loop: `python -m eeprune_jax.main` on the real pipeline, twice with one fresh
    compilation cache (cold, then warm); its training examples/s (per-epoch train seconds
    of summary.json, median over epochs after the first) / the bare step (target >= 0.9),
    its eval examples/s / a plain jitted forward pass, one dispatch per batch (target
    >= 0.8), and its start to
    first step, cold and warm, with the step program's compile seconds.
Calls of the two sides of an in-process ratio alternate, so load hits both alike.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

_START = time.time()

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import loop_benchmark  # pylint: disable=g-import-not-at-top,wrong-import-position
from eeprune_jax import data as data_lib  # pylint: disable=wrong-import-position
from eeprune_jax import models  # pylint: disable=wrong-import-position
from eeprune_jax import parallel  # pylint: disable=wrong-import-position
from eeprune_jax import steps as steps_lib  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_enum('preset', 'cpu', ['cpu', 'gpu'], 'configs/loop_benchmark.py preset.')
flags.DEFINE_string('npz_path', '', 'CIFAR-10 JPEG .npz (the gpu preset).')
flags.DEFINE_integer('rounds', 15, 'Timed calls of each in-process variant (after warm-up).')
flags.DEFINE_integer('steps_per_call', 10, 'Steps per timed call.')
flags.DEFINE_bool('json', False, 'Print one JSON object as the last line.')
flags.DEFINE_bool('skip_loop', False, 'In-process figures only (no main runs).')
flags.DEFINE_integer('epochs', 0, 'Epochs of the main runs (0: as the config says).')
flags.DEFINE_bool('smoke', False, "Seconds, for tests: every path once at the least size "
                  "(preset 'smoke', 2 rounds of 1 step per call); figures mean nothing.")

P = jax.sharding.PartitionSpec


def _config():
  config = loop_benchmark.get_config(FLAGS.preset)
  if FLAGS.npz_path:
    config.data.npz_path = FLAGS.npz_path
  return config


def _alternate(fns: dict[str, callable], rounds: int, times: dict[str, list[float]]) -> None:
  """Appends the seconds of `rounds` interleaved calls of each function to `times`."""
  for _ in range(rounds):
    for k, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times.setdefault(k, []).append(time.perf_counter() - start)


def _dispatches(program, state, *args):
  """A call running `program` (one step) `steps_per_call` times, one dispatch per step, as
  a training loop without the project's machinery would; returns the last outputs."""
  holder = [state]

  def call():
    for _ in range(FLAGS.steps_per_call):
      out = program(holder[0], *args)
      holder[0] = out[0]  # the new state
    return out
  return call


def _init(model, image_shape):
  """The network's variables, initialised by one compiled program (op by op is slower)."""
  return jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
      jnp.zeros((1, *image_shape)))


def _plain_flax(config, num_classes, image_shape, images, labels):
  """A plain jitted Flax train step of the same network, written without the project."""
  model = models.build_model(config.model, num_classes, axis_name=None)
  variables = _init(model, image_shape)
  decay = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
  tx = optax.chain(optax.add_decayed_weights(config.train.weight_decay, mask=decay),
                   optax.sgd(optax.cosine_decay_schedule(config.train.learning_rate, 10_000),
                             momentum=config.train.momentum, nesterov=True))
  state = (variables['params'], variables['batch_stats'], tx.init(variables['params']))

  def step(state, images, labels):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      logits, new = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                                train=True, mutable=['batch_stats'])
      loss = sum(optax.softmax_cross_entropy_with_integer_labels(
          l.astype(jnp.float32), labels).mean() for l in logits)
      return loss, new['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  device = jax.devices()[0]
  images, labels, state = jax.device_put((images, labels, state), device)
  return _dispatches(jax.jit(step, donate_argnums=0), state, images, labels)


def _project_steps(config, num_classes, image_shape, images, labels, mesh):
  """The project's train step as the loop runs it, and variants for the breakdown."""
  model = models.build_model(config.model, num_classes, axis_name=parallel.BATCH_AXIS)
  tx = steps_lib.make_optimizer(config.train)
  num_exits = len(models.exit_blocks(config.model))
  b = images.shape[0]
  batch = parallel.host_to_global(mesh, {
      'image': images, 'label': labels, 'index': np.arange(b, dtype=np.int32),
      'valid': np.ones(b, bool)})
  table = parallel.replicate(mesh, np.ones(50_000, np.float32))
  hp = parallel.replicate(mesh, {'lr': np.float32(0.01),
                                 'exit_weights': np.ones(num_exits, np.float32)})
  variants = {
      # name: (label smoothing, return per-example rows, gather example weights)
      'step': (0.0, False, False),
      'step+rows': (0.0, True, False),
      'step+onehot': (1e-6, False, False),
      'step+weights': (0.0, False, True),
  }
  calls, programs = {}, {}
  for name, (smoothing, rows, weighted) in variants.items():
    def step(state, batch, hp, table, smoothing=smoothing, rows=rows, weighted=weighted):
      if weighted:
        hp = {**hp, 'example_weight': table[batch['index']]}
      state, metrics, per_example = steps_lib.train_step(state, batch, hp, smoothing)
      return (state, metrics, per_example) if rows else (state, metrics)

    out_specs = (P(), P(), P(parallel.BATCH_AXIS)) if rows else (P(), P())
    programs[name] = parallel.data_parallel(
        step, mesh, in_specs=(P(), P(parallel.BATCH_AXIS), P(), P()), out_specs=out_specs,
        donate_argnums=0)
    state = steps_lib.create_train_state(model, tx, image_shape, 0, mesh)
    if name == 'step':
      start = time.perf_counter()
      programs[name].lower(state, batch, hp, table).compile()
      compile_s = time.perf_counter() - start
    calls[name] = _dispatches(programs[name], state, batch, hp, table)
  return calls, compile_s


def _plain_forward(config, num_classes, image_shape, images):
  """A plain jitted eval-mode forward pass (final logits) of the same network."""
  model = models.build_model(config.model, num_classes, axis_name=None)
  variables = _init(model, image_shape)
  fn = jax.jit(lambda v, x: model.apply(v, x, train=False)[-1])
  device = jax.devices()[0]
  variables, images = jax.device_put((variables, images), device)
  return lambda: [fn(variables, images) for _ in range(FLAGS.steps_per_call)]


def _main_run(config_arg: list[str], workdir: str, cache_dir: str) -> dict:
  """`python -m eeprune_jax.main` in a subprocess; returns its summary.json."""
  env = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': cache_dir,
         'PYTHONPATH': ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')}
  cmd = [sys.executable, '-m', 'eeprune_jax.main',
         f'--config={ROOT}/configs/loop_benchmark.py:{FLAGS.preset}', f'--workdir={workdir}',
         *config_arg]
  subprocess.run(cmd, env=env, check=True, cwd=ROOT)
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)


def _loop_figures(summary: dict) -> dict[str, float]:
  """Training and eval examples/s of a run (median over the epochs after the first)."""
  hist = summary['history'][1:]
  batch = summary['config']['train']['batch_size']
  train = float(np.median([h['steps'] * batch / h['train_seconds'] for h in hist]))
  evals = float(np.median([h['eval_count'] / h['eval_seconds'] for h in hist]))
  seconds = summary['ledger']['seconds']
  return {'train': train, 'eval': evals, 'startup_s': summary['ledger']['startup_seconds'],
          'train_eval_s': seconds['train'] + seconds['eval'],
          'accuracy': summary['history'][-1]['eval_accuracy'][-1]}


def _main_runs() -> dict[str, dict[str, float]]:
  """Two runs of the real job with one fresh compilation cache: cold, then warm."""
  overrides = [f'--config.data.npz_path={FLAGS.npz_path}'] if FLAGS.npz_path else []
  if FLAGS.epochs:
    overrides.append(f'--config.train.num_epochs={FLAGS.epochs}')
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, 'cache')
    return {name: _loop_figures(_main_run(overrides, os.path.join(tmp, name), cache))
            for name in ('cold', 'warm')}


def main(argv):
  del argv
  if FLAGS.smoke:  # 2 rounds: one before the main runs and one after
    FLAGS.preset, FLAGS.rounds, FLAGS.steps_per_call = 'smoke', 2, 1
  config = _config()
  mesh = parallel.make_mesh()
  info = data_lib.dataset_info(config.data)
  shape, b = info.image_shape, config.train.batch_size
  rng = np.random.default_rng(0)
  images = rng.standard_normal((b, *shape), np.float32)
  labels = rng.integers(0, info.num_classes, b).astype(np.int32)
  eval_images = rng.standard_normal((config.train.eval_batch_size, *shape), np.float32)

  calls, compile_s = _project_steps(config, info.num_classes, shape, images, labels, mesh)
  calls['plain_flax'] = _plain_flax(config, info.num_classes, shape, images, labels)
  calls['forward'] = _plain_forward(config, info.num_classes, shape, eval_images)
  for fn in calls.values():  # compile and warm up
    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
  # Half the in-process rounds before the main runs and half after, so that load changes
  # over the benchmark hit both sides of the loop / step ratio alike.
  times: dict[str, list[float]] = {}
  _alternate(calls, (FLAGS.rounds + 1) // 2, times)
  runs = {} if FLAGS.skip_loop else _main_runs()
  _alternate(calls, FLAGS.rounds // 2, times)
  per_step = {k: float(np.median(v)) / FLAGS.steps_per_call for k, v in times.items()}
  ips = {k: (config.train.eval_batch_size if k == 'forward' else b) / v
         for k, v in per_step.items()}
  platform = jax.devices()[0].platform
  kind = jax.devices()[0].device_kind
  out = {
      'platform': platform, 'device_kind': kind, 'devices': jax.device_count(),
      'preset': FLAGS.preset, 'batch_size': b,
      'bare_step_examples_per_s': ips['step'],
      'plain_flax_step_examples_per_s': ips['plain_flax'],
      'forward_examples_per_s': ips['forward'],
      'step_over_plain_flax': ips['step'] / ips['plain_flax'],
      'breakdown_time_over_step': {k: per_step[k] / per_step['step']
                                   for k in ('step+rows', 'step+onehot', 'step+weights')},
      'step_compile_s': compile_s,
  }
  print(f"{config.model.name} width {config.model.width} {config.model.dtype}, batch {b}, "
        f"{jax.device_count()} x {platform} ({kind})")
  print(f"  bare train step           {ips['step']:10.1f} examples/s")
  print(f"  plain jitted Flax step    {ips['plain_flax']:10.1f} examples/s")
  print(f"  step / plain Flax step    {out['step_over_plain_flax']:10.3f}  (target >= 0.95)")
  for k, v in out['breakdown_time_over_step'].items():
    print(f"  time of {k:<16} {v:10.3f} x the step's")
  print(f"  plain forward pass        {ips['forward']:10.1f} examples/s")
  print(f"  step program compile      {compile_s:10.2f} s")
  if runs:
    cold, warm = runs['cold'], runs['warm']
    out.update({
        'loop_examples_per_s': warm['train'], 'eval_examples_per_s': warm['eval'],
        'loop_over_step': warm['train'] / ips['step'],
        'eval_over_forward': warm['eval'] / ips['forward'],
        'start_to_first_step_s': warm['startup_s'],
        'start_to_first_step_cold_cache_s': cold['startup_s'],
        'loop_over_step_cold_run': cold['train'] / ips['step'],
        'run_train_eval_s': warm['train_eval_s'], 'final_test_accuracy': warm['accuracy'],
    })
    print(f"  loop, training phase      {warm['train']:10.1f} examples/s")
    print(f"  loop / bare step          {out['loop_over_step']:10.3f}  (target >= 0.9)")
    print(f"  eval pass                 {warm['eval']:10.1f} examples/s")
    print(f"  eval / forward            {out['eval_over_forward']:10.3f}  (target >= 0.8)")
    print(f"  start to first step       {cold['startup_s']:10.2f} s cold cache, "
          f"{warm['startup_s']:.2f} s warm")
  print(f"  benchmark wall time       {time.time() - _START:10.1f} s")
  if FLAGS.json:
    print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
