"""Lets every process of a multi-process test write JAX's compilation cache (tests only).

JAX writes cache entries from process 0 only (to spare shared file systems), and on CPU an
entry's key hashes the process's own topology fingerprint, so process 1 of a two-process
test never finds process 0's entries: it compiled every program in every suite run, about
10 CPU-seconds a test. Loaded at interpreter start by the processes of those tests
(`jax_cache.every_process_writes`), this lets process 1 keep its own entries; what a
process computes does not change. If JAX's internals move, it does nothing. Being a
sitecustomize, it hides any other on the path from those processes (none is installed here).
"""

try:
  from jax._src import compiler as _compiler
  from jax._src import distributed as _distributed
except ImportError:
  _compiler = None

if _compiler is not None and hasattr(_compiler, '_cache_write') and hasattr(
    _distributed, 'global_state'):
  _write = _compiler._cache_write  # pylint: disable=protected-access

  def _write_as_process_zero(*args, **kwargs):
    """JAX's `_cache_write`, past its process-0 check (it reads nothing else of the id)."""
    state = _distributed.global_state
    process_id, state.process_id = state.process_id, 0
    try:
      return _write(*args, **kwargs)
    finally:
      state.process_id = process_id

  _compiler._cache_write = _write_as_process_zero  # pylint: disable=protected-access
