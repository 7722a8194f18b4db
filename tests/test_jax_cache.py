"""The tests' compilation cache stays writable (`jax_cache.restore_access_times`)."""

from jax._src import lru_cache  # what JAX's persistent compilation cache writes through
import pytest

import jax_cache


def test_an_entry_without_an_access_time_blocks_every_write_until_restored(tmp_path):
  # As the suite sets it: eviction on (a maximum size), which keeps an access time per entry.
  cache = lru_cache.LRUCache(str(tmp_path), max_size=jax_cache.MAX_BYTES)
  cache.put('a', b'program a')
  (tmp_path / 'a-atime').unlink()  # as a process without eviction, or one killed, leaves it
  # If JAX stops failing here, restore_access_times and its call in conftest can go.
  with pytest.raises(FileNotFoundError):
    cache.put('b', b'program b')
  assert jax_cache.restore_access_times(str(tmp_path)) == 1
  cache.put('b', b'program b')
  assert cache.get('a') == b'program a' and cache.get('b') == b'program b'
  assert jax_cache.restore_access_times(str(tmp_path)) == 0
