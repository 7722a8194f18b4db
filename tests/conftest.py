"""Test session setup: 8 fake CPU devices, so every data-parallel path runs sharded.

XLA reads the flag when JAX initialises its backend, so it is set here, before any test
module imports jax. Tests that need one device run a subprocess without it.
"""

import os

import pytest

import jax_cache
import xla_env

os.environ['XLA_FLAGS'] = xla_env.flags(8)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
_cache_dir = jax_cache.set_environment()  # one compilation cache for every test and run
if 'PYTEST_XDIST_WORKER' not in os.environ:  # once, before any worker or test compiles
  jax_cache.restore_access_times(_cache_dir)


# Module fixtures that train or compare (tens of seconds each): the tests that use one run
# on one pytest-xdist worker (`--dist loadgroup`, setup.cfg), so each is built once.
_EXPENSIVE_FIXTURES = frozenset(
    {'full_run', 'one_device_run', 'both', 'dynamic_run', 'comparison', 'run_dir', 'el2n_run',
     'forgetting_run'})


@pytest.hookimpl(tryfirst=True)  # before xdist's hook, which reads the groups
def pytest_collection_modifyitems(items):
  """Groups the tests of a module that share an expensive module fixture: one group per
  set of fixtures linked by a test using several, so unrelated fixtures spread over workers."""
  parent = {}  # union-find over (module, fixture)

  def root(node):
    while parent.setdefault(node, node) != node:
      node = parent[node]
    return node

  uses = {}
  for item in items:
    nodes = [(item.module.__name__, f) for f in sorted(_EXPENSIVE_FIXTURES & set(item.fixturenames))]
    for node in nodes[1:]:
      parent[root(node)] = root(nodes[0])
    if nodes:
      uses[item] = nodes[0]
  for item, node in uses.items():
    item.add_marker(pytest.mark.xdist_group('.'.join(root(node))))


@pytest.fixture(autouse=True)
def _close_test_pipelines(monkeypatch):
  """Closes every input pipeline a test builds through `data.create_pipeline`, when the
  test ends: a grain pipeline left open keeps its prefetch thread (and grain's reader
  threads, or worker processes) alive in the xdist worker for the rest of the suite.
  Module fixtures' pipelines are built before this fixture is set up and stay open; a
  run's pipeline, which the run closes itself, is closed again, a no-op."""
  from eeprune_jax import data  # pylint: disable=g-import-not-at-top  # after XLA_FLAGS
  built, create = [], data.create_pipeline

  def create_and_record(*args, **kwargs):
    pipe = create(*args, **kwargs)
    built.append(pipe)
    return pipe

  monkeypatch.setattr(data, 'create_pipeline', create_and_record)
  yield
  for pipe in built:
    pipe.close()


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config) -> int | None:  # pylint: disable=unused-argument
  """`-n auto` (setup.cfg): one worker more than this process may use cores, so a core
  left idle while a test waits on its subprocesses or the disk runs another test
  (docs/test_suite.md: 2, 3 and 4 workers on 2 cores)."""
  if os.environ.get('PYTEST_XDIST_AUTO_NUM_WORKERS'):
    return None  # xdist's own hook reads it
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
           else os.cpu_count() or 1)
  return cores + 1


def pytest_configure(config):
  """Refuses a pytest that xdist's loadgroup cannot group with (each worker would train
  every grouped module fixture again): pytest 9.2's structured node ids and xdist <= 3.8.
  With SUITE_PROFILE=PATH, every pytest process records where its time went
  (`suite_profile`)."""
  if os.environ.get('SUITE_PROFILE'):
    import suite_profile  # pylint: disable=g-import-not-at-top
    config.pluginmanager.register(suite_profile)
  if config.getoption('dist', default='no') != 'loadgroup' or hasattr(config, 'workerinput'):
    return
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  xdist = tuple(int(p) for p in importlib.metadata.version('pytest-xdist').split('.')[:2])
  if pytest.version_tuple[:2] >= (9, 2) and xdist <= (3, 8):
    raise pytest.UsageError(
        f'pytest {pytest.__version__} with pytest-xdist {".".join(map(str, xdist))} does not '
        'group tests under --dist loadgroup (pytest-dev/pytest-xdist#1386): install the '
        'versions setup.py names: pip install -e ".[test]"')
