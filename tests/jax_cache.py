"""The tests' persistent compilation cache: where it is, and keeping it writable.

Many tests compile the same tiny programs (subprocess runs start cold, and so does every
suite run): a persistent compilation cache, inherited by the subprocesses through the
environment, turns the repeats into cache hits. It is kept between suite runs, beside the
product's own cache, so a later run from any clone compiles only the programs that changed
(docs/test_suite.md: the time cold and warm). JAX keys an entry by program, flags and
jaxlib version, and evicts the least recently used past JAX_COMPILATION_CACHE_MAX_SIZE (a
suite run writes about 20 MB); its eviction also locks every read and write (filelock), so
no process reads an entry that another is still writing. A JAX_COMPILATION_CACHE_DIR set
by the caller wins: `JAX_COMPILATION_CACHE_DIR=$(mktemp -d)` gives a cold run.

Nothing here imports JAX: it reads its JAX_* variables when it is imported, so they are set
before any test module imports it.
"""

import os
import pathlib
import tempfile

MAX_BYTES = 256 << 20
_CACHE, _ATIME = '-cache', '-atime'  # the suffixes of jax._src.lru_cache's two files


def set_environment() -> str:
  """Points this process (and the processes it starts) at the tests' cache; its path."""
  if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
    # The root of `compilation_cache.default_dir`, not imported: it imports JAX.
    path = os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
        'eeprune_jax', 'test_compilation_cache')
    try:
      os.makedirs(path, exist_ok=True)
    except OSError:  # a read-only home: a cache for this run only
      path = tempfile.mkdtemp(prefix='eeprune-jax-cc-')
    os.environ['JAX_COMPILATION_CACHE_DIR'] = path
  os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(MAX_BYTES))
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
  return os.environ['JAX_COMPILATION_CACHE_DIR']


def restore_access_times(path: str) -> int:
  """Gives each entry of the cache at `path` that has no access-time file one (the time
  the entry was written); returns how many it gave.

  With eviction on, JAX's cache reads every entry's access time before each write, and a
  single missing one fails every later write (FileNotFoundError: the writing process
  warns and goes on, and its programs are compiled again in every later suite run). An
  entry lacks one when a process wrote it without JAX_COMPILATION_CACHE_MAX_SIZE (no
  eviction, so no access times: a run started by hand with only the directory set), or
  was killed between the entry's two files (the suite kills runs at random moments).
  """
  given = 0
  for entry in pathlib.Path(path).glob(f'*{_CACHE}'):
    atime = entry.with_name(entry.name.removesuffix(_CACHE) + _ATIME)
    if not atime.exists():
      atime.write_bytes(entry.stat().st_mtime_ns.to_bytes(8, 'little'))
      given += 1
  return given


def every_process_writes(env: dict[str, str]) -> dict[str, str]:
  """`env` for the processes of a multi-process run, each of which then writes its own
  cache entries (cache_from_every_process/sitecustomize.py: why)."""
  shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cache_from_every_process')
  return {**env, 'PYTHONPATH': os.pathsep.join(p for p in (shim, env.get('PYTHONPATH')) if p)}
