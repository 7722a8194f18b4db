"""Where the test suite's time goes: per test, CPU seconds and JAX's compile phases.

  SUITE_PROFILE=/tmp/profile.jsonl python -m pytest -q tests   # conftest loads this plugin
  python tests/suite_profile.py /tmp/profile.jsonl              # totals, per file, costliest

Each pytest process (every xdist worker) appends one JSON line per test: wall seconds, its
own CPU seconds, the CPU seconds of the subprocesses it waited for, and the seconds JAX
reported in that process for tracing, lowering and XLA compilation (`jax.monitoring`
duration events; a subprocess's compilations count in its CPU seconds only), and the wall
seconds of Python's garbage collections in the test: `gc` in all, `gc_max` the longest one
(a collection runs finalizers, such as a tf.data iterator's, which can wait). The file holds
one run: the controlling process empties it before any worker starts. JAX reports its phases
in wall seconds, from any thread of the process: they can exceed `cpu`.
"""

import collections
import gc
import json
import os
import resource
import sys
import time

import pytest

PHASES = {'/jax/core/compile/jaxpr_trace_duration': 'trace',
          '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower',
          '/jax/core/compile/backend_compile_duration': 'compile'}
_seconds: collections.Counter = collections.Counter()
_gc = {'start': 0.0, 'max': 0.0}  # the running collection's start; the longest this test


def _time_collections(phase: str, info: dict) -> None:  # pylint: disable=unused-argument
  """A `gc.callbacks` entry: adds each collection's wall seconds to `_seconds['gc']`."""
  if phase == 'start':
    _gc['start'] = time.perf_counter()
  else:
    seconds = time.perf_counter() - _gc['start']
    _seconds['gc'] += seconds
    _gc['max'] = max(_gc['max'], seconds)


def pytest_configure(config):
  """Empties the profile (in the controlling process) and starts counting JAX's compile
  phases in this process."""
  if not hasattr(config, 'workerinput'):  # the controller, or the only process under -n 0
    open(os.environ['SUITE_PROFILE'], 'w', encoding='utf-8').close()
  import jax  # pylint: disable=g-import-not-at-top

  def on_duration(event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event in PHASES:
      _seconds[PHASES[event]] += duration
  jax.monitoring.register_event_duration_secs_listener(on_duration)
  gc.callbacks.insert(0, _time_collections)  # first: JAX's own callback then counts in it


def _cpu() -> tuple[float, float]:
  own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                    resource.RUSAGE_CHILDREN))
  return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
  """Records one test's setup, call and teardown."""
  before, (own, children), start = dict(_seconds), _cpu(), time.time()
  _gc['max'] = 0.0
  yield
  own_after, children_after = _cpu()
  row = {'test': item.nodeid, 'wall': time.time() - start, 'cpu': own_after - own,
         'subprocess_cpu': children_after - children,
         **{phase: _seconds[phase] - before.get(phase, 0.0)
            for phase in (*PHASES.values(), 'gc')}, 'gc_max': _gc['max']}
  with open(os.environ['SUITE_PROFILE'], 'a', encoding='utf-8') as f:
    f.write(json.dumps(row) + '\n')


def summarize(path: str, top: int = 25) -> str:
  """The totals over every test, per test file, the `top` tests by CPU seconds, then the
  tests in which one garbage collection took 1 s or more."""
  rows = [json.loads(line) for line in open(path, encoding='utf-8')]
  keys = ('wall', 'cpu', 'subprocess_cpu', *PHASES.values(), 'gc')
  totals = {k: sum(r.get(k, 0.0) for r in rows) for k in keys}  # no 'gc' before 2026-12-03
  lines = [f'{len(rows)} tests; seconds summed over tests: ' +
           ', '.join(f'{k} {v:,.0f}' for k, v in totals.items())]
  files: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in rows:
    files[r['test'].split('::')[0]].update(cpu=r['cpu'], sub=r['subprocess_cpu'], tests=1)
  lines.append(f"{'cpu':>6} {'subproc':>7} {'tests':>5}  file")
  for name, f in sorted(files.items(), key=lambda kv: -(kv[1]['cpu'] + kv[1]['sub'])):
    lines.append(f"{f['cpu']:6.0f} {f['sub']:7.0f} {f['tests']:5d}  {name}")
  rows.sort(key=lambda r: -(r['cpu'] + r['subprocess_cpu']))
  lines.append(f"{'cpu':>6} {'subproc':>7} {'compile':>7} {'trace':>6} {'lower':>6}  test")
  for r in rows[:top]:
    lines.append(f"{r['cpu']:6.0f} {r['subprocess_cpu']:7.0f} {r['compile']:7.0f} "
                 f"{r['trace']:6.0f} {r['lower']:6.0f}  {r['test']}")
  stalls = sorted((r for r in rows if r.get('gc_max', 0.0) >= 1.0), key=lambda r: -r['gc_max'])
  lines.append(f'{len(stalls)} tests with a garbage collection of 1 s or more')
  lines.extend(f"{r['gc_max']:6.1f} s  {r['test']}" for r in stalls)
  return '\n'.join(lines)


if __name__ == '__main__':
  print(summarize(sys.argv[1]))
