"""Runs at once on one accelerator (`compare.parallel`) against one run alone.

  python benchmarks/concurrent_runs.py                     # CPU: configs/loop_benchmark.py:cpu
  python benchmarks/concurrent_runs.py --preset=gpu --npz_path=cifar10_jpeg.npz --runs=5 --json
  python benchmarks/concurrent_runs.py --smoke --json      # seconds: preset 'smoke', one cache

Both sides go through `eeprune_jax.run_pool`, so every run pays a process start, a data
load and its compilations (no persistent compilation cache but with `--smoke`, so
neither side finds the other's programs): first one run alone (seed 0), then `--runs` runs
at once (seeds 1..N), each with 0.9 / N of device memory. Prints the wall time of each and the throughput gain, N x one run / N at once (on
a CPU about 1 or less: each run already uses every core). The parent starts no JAX
backend; `devices` comes from the runs' summaries.
"""

import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import loop_benchmark  # pylint: disable=g-import-not-at-top,wrong-import-position
from eeprune_jax import run_pool  # pylint: disable=wrong-import-position
from eeprune_jax import workdir as workdir_lib  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_enum('preset', 'cpu', ['cpu', 'gpu'], 'configs/loop_benchmark.py preset.')
flags.DEFINE_string('npz_path', '', 'CIFAR-10 JPEG .npz (the gpu preset).')
flags.DEFINE_integer('runs', 2, 'Runs at once.')
flags.DEFINE_integer('epochs', 0, 'Epochs of every run (0: as the config says).')
flags.DEFINE_bool('json', False, 'Print one JSON object as the last line.')
flags.DEFINE_bool('smoke', False, "Seconds, for tests: the 'smoke' preset (2 epochs of 128 "
                  'digits), 2 runs at once, one compilation cache; figures mean nothing.')


def _timed(root: str, seeds: range, parallel: int, cache_dir: str
           ) -> tuple[float, list[dict]]:
  """Wall seconds for the runs of `seeds`, `parallel` at once, and their summaries."""
  jobs = []
  for seed in seeds:
    def make_config(seed=seed):
      config = loop_benchmark.get_config(FLAGS.preset)
      config.seed = seed
      config.train.compilation_cache_dir = cache_dir  # '': every run compiles
      if FLAGS.npz_path:
        config.data.npz_path = os.path.abspath(FLAGS.npz_path)
      if FLAGS.epochs:
        config.train.num_epochs = FLAGS.epochs
      return config
    jobs.append(run_pool.Job(f'seed{seed}', workdir_lib.RunDir(f'{root}/seed{seed}'),
                             make_config))
  outcomes = []
  start = time.perf_counter()
  run_pool.run_jobs(jobs, parallel=parallel, fraction=run_pool.memory_fraction(parallel, 0.0),
                    on_outcome=outcomes.append, progress_every_s=60.0)
  seconds = time.perf_counter() - start
  failed = [o for o in outcomes if o.summary is None]
  if failed:
    raise SystemExit(f'{failed[0].name} failed: {failed[0].error}')
  return seconds, [o.summary for o in outcomes]


def main(argv):
  del argv
  if FLAGS.smoke:
    FLAGS.preset, FLAGS.runs = 'smoke', 2
  if not FLAGS.smoke:
    os.environ.pop('JAX_COMPILATION_CACHE_DIR', None)  # the runs inherit this environment
  with tempfile.TemporaryDirectory() as root:
    # Smoke: the runs share one compilation cache (the caller's, else one here), so only
    # the first compiles; its figures mean nothing and compiling is most of a tiny run.
    cache = os.path.join(root, 'cache') if FLAGS.smoke else ''
    one_s, _ = _timed(root, range(0, 1), parallel=1, cache_dir=cache)
    many_s, summaries = _timed(root, range(1, FLAGS.runs + 1), parallel=FLAGS.runs,
                               cache_dir=cache)
  result = {
      'runs': FLAGS.runs, 'epochs': summaries[0]['history'][-1]['epoch'],
      'one_run_s': round(one_s, 2), 'runs_at_once_s': round(many_s, 2),
      'throughput_gain': round(FLAGS.runs * one_s / many_s, 3),
      'memory_fraction': run_pool.memory_fraction(FLAGS.runs, 0.0),
      'devices': summaries[0]['devices'], 'preset': FLAGS.preset}
  print(f"one run alone {one_s:.1f} s; {FLAGS.runs} at once {many_s:.1f} s: "
        f"{result['throughput_gain']:.2f}x the throughput of one run at a time")
  if FLAGS.json:
    print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
