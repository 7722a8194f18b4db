"""GPU energy from NVIDIA's management library (NVML, the `pynvml` module), where it answers
and where it can be attributed to this run.

NVML's `nvmlDeviceGetTotalEnergyConsumption` is each GPU's energy in millijoules since the
driver loaded (Volta and newer); a phase's energy is the difference of two reads around
it, summed over the GPUs this process runs on: those whose compute processes
(`nvmlDeviceGetComputeRunningProcesses`) include this pid, or every GPU NVML sees where no
GPU lists it (a container's pid namespace hides it from the driver). A GPU's counter is
its whole draw, so when another process computes on one of those GPUs (`compare.parallel`,
one process per GPU on a shared host) the energy cannot be told apart: from that read on,
`unattributed()` says why and the ledger leaves the figure out rather than charge this run
the others' energy. Where `pynvml` does not import, NVML does not start, a GPU does not
report energy, or JAX does not run on GPUs, every read is None and the ledger records no
energy: never an error. In a multi-host run each host reads its own GPUs and process 0's
ledger is the one written.
"""

import importlib
import os
from typing import Any

import jax

_METER: 'Meter | None' = None


class Meter:
  """Reads the total energy of this process's NVIDIA GPUs; `available` False where it cannot."""

  def __init__(self, nvml: Any = None, pid: int | None = None):
    """`nvml`: the pynvml module (imported here when None; tests pass a fake)."""
    self._nvml, self._handles = None, []
    self._pid = os.getpid() if pid is None else pid
    self._pid_visible = False
    self.unattributed: str | None = None  # why the energy is not this run's alone
    try:
      nvml = nvml if nvml is not None else importlib.import_module('pynvml')
      nvml.nvmlInit()
      handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
      for handle in handles:  # raises where a GPU has no energy counter
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
      self._nvml = nvml
      mine = [h for h in handles if self._pid in self._pids(h)]
      self._pid_visible = bool(mine)
      self._handles = mine or handles
    except Exception:  # pylint: disable=broad-except  # no library, no driver, no counter
      self._nvml, self._handles = None, []

  def _pids(self, handle: Any) -> set[int]:
    """The pids computing on a GPU (raises where NVML cannot list them)."""
    return {p.pid for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)}

  def _check_sharing(self) -> None:
    """Sets `unattributed` when another process computes on this process's GPUs."""
    try:
      pids = set().union(*(self._pids(h) for h in self._handles))
    except Exception:  # pylint: disable=broad-except  # cannot tell: cannot attribute
      self.unattributed = 'NVML cannot list the processes on this run\'s GPUs'
      return
    others = sorted(pids - {self._pid}) if self._pid_visible else (
        sorted(pids) if len(pids) > 1 else [])
    if others:
      self.unattributed = (f'other processes (pids {others[:8]}) compute on this run\'s '
                           'GPUs, whose energy counters cannot tell the processes apart')

  @property
  def available(self) -> bool:
    """Whether reads return numbers."""
    return bool(self._handles)

  def joules(self) -> float | None:
    """Total energy of this process's GPUs since their driver loaded, in joules; None where
    unknown or not this run's alone (`unattributed`)."""
    if not self._handles or self.unattributed:
      return None
    self._check_sharing()
    if self.unattributed:
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


def unattributed() -> str | None:
  """Why this run's GPU energy cannot be told apart from other processes', or None."""
  return meter().unattributed


class _Absent:
  """Stands in for pynvml where it must not be used: its start fails."""

  def nvmlInit(self):  # pylint: disable=invalid-name
    raise RuntimeError('NVML not used off GPUs')
