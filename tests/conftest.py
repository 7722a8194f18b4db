"""Test session setup: 8 fake CPU devices, so every data-parallel path runs sharded.

XLA reads the flag when JAX initialises its backend, so it is set here, before any test
module imports jax. Tests that need one device run a subprocess without it.
"""

import os
import tempfile


os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Many tests compile the same tiny programs (every run builds its steps afresh, and
# subprocess runs start cold): a session-wide persistent compilation cache, inherited by
# the subprocesses through the environment, turns the repeats into cache hits.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='eeprune-jax-cc-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
