"""Test session setup: 8 fake CPU devices, so every data-parallel path runs sharded.

XLA reads the flag when JAX initialises its backend, so it is set here, before any test
module imports jax. Tests that need one device run a subprocess without it.
"""

import os
import pathlib

import pytest

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data'


@pytest.fixture
def shared_data() -> pathlib.Path:
  """../shared/data beside the checkout, or a skip saying it is absent."""
  if not (SHARED_DATA / 'tfds' / 'cifar10').exists():
    pytest.skip(f'the shared CIFAR-10 copy is absent ({SHARED_DATA}); it exists only on the '
                'development machines')
  return SHARED_DATA
