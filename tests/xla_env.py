"""XLA settings for tests: N fake CPU devices, compiled for compile speed.

Compilation dominates the suite (a tiny ResNet's train step takes longer to compile than
to run all its epochs), so tests compile at LLVM -O0: on the tiny config this halves a
train step's compile time and lowers a whole run's CPU time by a quarter. Every process
of a test (pytest itself and the runs it starts) gets the same flags, so runs that are
compared bit for bit are compiled alike. Benchmarks' figures are not taken from tests.
"""

import os

_COMPILE_FAST = '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'


def flags(devices: int) -> str:
  """XLA_FLAGS for `devices` fake CPU devices, compiled fast."""
  return f'{_COMPILE_FAST} --xla_force_host_platform_device_count={devices}'


def env(devices: int, **extra: str) -> dict[str, str]:
  """This process's environment with XLA_FLAGS for `devices` devices, plus `extra`."""
  return {**os.environ, 'XLA_FLAGS': flags(devices), **extra}
