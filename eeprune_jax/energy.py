"""GPU energy from NVIDIA's management library (NVML, the `pynvml` module), where it answers.

NVML's `nvmlDeviceGetTotalEnergyConsumption` is each GPU's energy in millijoules since the
driver loaded (Volta and newer); a phase's energy is the difference of two reads around
it, summed over every GPU NVML sees on this host. Where `pynvml` does not import, NVML
does not start, a GPU does not report energy, or JAX does not run on GPUs, every read is
None and the ledger records no energy: never an error. In a multi-host run each host
reads its own GPUs and process 0's ledger is the one written.
"""

import importlib
from typing import Any

import jax

_METER: 'Meter | None' = None


class Meter:
  """Reads the total energy of this host's NVIDIA GPUs; `available` False where it cannot."""

  def __init__(self, nvml: Any = None):
    """`nvml`: the pynvml module (imported here when None; tests pass a fake)."""
    self._nvml, self._handles = None, []
    try:
      nvml = nvml if nvml is not None else importlib.import_module('pynvml')
      nvml.nvmlInit()
      handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
      for handle in handles:  # raises where a GPU has no energy counter
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
      self._nvml, self._handles = nvml, handles
    except Exception:  # pylint: disable=broad-except  # no library, no driver, no counter
      pass

  @property
  def available(self) -> bool:
    """Whether reads return numbers."""
    return bool(self._handles)

  def joules(self) -> float | None:
    """Total energy of every GPU since its driver loaded, in joules; None where unknown."""
    if not self._handles:
      return None
    try:
      return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                 for h in self._handles) / 1000.0
    except Exception:  # pylint: disable=broad-except  # a GPU stopped answering
      return None


def _on_gpus() -> bool:
  return jax.default_backend() == 'gpu'


def meter() -> Meter:
  """This process's meter (created on first use; unavailable unless JAX runs on GPUs)."""
  global _METER
  if _METER is None:
    _METER = Meter() if _on_gpus() else Meter(nvml=_Absent())
  return _METER


def read_joules() -> float | None:
  """The meter's reading in joules, or None."""
  return meter().joules()


class _Absent:
  """Stands in for pynvml where it must not be used: its start fails."""

  def nvmlInit(self):  # pylint: disable=invalid-name
    raise RuntimeError('NVML not used off GPUs')
