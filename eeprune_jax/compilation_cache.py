"""JAX's persistent compilation cache: a second run of the same config skips compiling."""

import os

from absl import logging
import jax

ENV_VAR = 'JAX_COMPILATION_CACHE_DIR'


def default_dir() -> str:
  """The user's cache directory for compiled programs ($XDG_CACHE_HOME or ~/.cache)."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'eeprune_jax', 'jax_compilation_cache')


def enable(cache_dir: str) -> None:
  """Caches compiled programs in `cache_dir` ('default': `default_dir()`; '': off).

  A directory set through JAX's own environment variable wins: whoever set it chose.
  """
  if not cache_dir or os.environ.get(ENV_VAR):
    return
  path = default_dir() if cache_dir == 'default' else os.path.expanduser(cache_dir)
  try:
    if not path.startswith('gs://'):
      os.makedirs(path, exist_ok=True)
  except OSError as e:  # a read-only home must not stop a run
    logging.warning('Compilation cache off: cannot create %s (%s).', path, e)
    return
  jax.config.update('jax_compilation_cache_dir', path)
