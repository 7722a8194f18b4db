"""XLA settings for tests: N fake CPU devices, compiled at a lower optimisation level.

Compilation dominates the suite (a tiny ResNet's train step takes longer to compile than
to run all its epochs). XLA:CPU's backend at level 1 instead of 2 took 24-26% less CPU
time on a tiny run, a GraNd run and a loop test (measured with a cold compilation cache);
level 0 took 28% less on the tiny run but 3.6x more on GraNd, whose per-example gradients
are execution-bound. XLA:CPU's older loop emitters (`--xla_cpu_use_fusion_emitters=false`)
compile faster again and run as fast: `python -m pytest -n 0 tests/test_method_grand.py
tests/test_train.py::test_baseline_methods_run_end_to_end tests/test_loop.py` took 105
CPU-s against 125, the whole suite 10 min 36 s against 12 min 15 s. With both level 0 and
the older emitters the train step compiled 3x faster, but loop tests whose `fori_loop`
carries the per-example table ran up to 3x slower.

Every process of a test (pytest itself and the runs it starts) gets the same flags, so
runs compared bit for bit are compiled alike. Benchmarks' figures are never taken from
tests; their smoke runs (tests/test_benchmarks.py), compile-bound and compared with
nothing, compile at level 0: 103 CPU-s for that file against 129 at level 1. So do programs
a test runs once on a few examples (tests/test_models.py's jit tests: 23 CPU-s against 46).
"""

import os

# The level for compile-bound work: programs run once, or compared with nothing.
COMPILE_BOUND_LEVEL = 0
# As `jax.jit(..., compiler_options=COMPILE_BOUND_OPTIONS)`, for one program in a process.
COMPILE_BOUND_OPTIONS = {'xla_backend_optimization_level': COMPILE_BOUND_LEVEL}


def flags(devices: int, optimization_level: int = 1) -> str:
  """XLA_FLAGS for `devices` fake CPU devices, compiled faster."""
  return (f'--xla_backend_optimization_level={optimization_level} '
          '--xla_cpu_use_fusion_emitters=false '
          f'--xla_force_host_platform_device_count={devices}')


def env(devices: int, optimization_level: int = 1, **extra: str) -> dict[str, str]:
  """This process's environment with XLA_FLAGS for `devices` devices, plus `extra`."""
  return {**os.environ, 'XLA_FLAGS': flags(devices, optimization_level), **extra}
