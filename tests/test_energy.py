"""GPU energy per ledger phase: absent without NVML, recorded with a (fake) one, left out
when other processes share the GPUs.

There is no GPU here, so NVML cannot run: these tests stand a fake pynvml module in for it
(energy counters and process lists), which is all `energy.py` reads from NVML.
"""

import os
import sys
import types

import pytest

from eeprune_jax import energy
from eeprune_jax import ledger as ledger_lib
from eeprune_jax import train
import tiny_config


def fake_nvml(millijoules_per_read=(1000, 0), broken=False, pids=None):
  """A stand-in pynvml: two GPUs whose energy counters rise by the given mJ every read, and
  `pids[i]`: the processes computing on GPU i (default: this one on both; a list the test
  may change as the run goes)."""
  counters = [5000, 7000]
  pids = [[os.getpid()], [os.getpid()]] if pids is None else pids

  def energy_of(handle):
    if broken:
      raise RuntimeError('NVML_ERROR_NOT_SUPPORTED')
    counters[handle] += millijoules_per_read[handle]
    return counters[handle]

  return types.SimpleNamespace(
      nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2,
      nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetTotalEnergyConsumption=energy_of,
      nvmlDeviceGetComputeRunningProcesses=lambda i: [types.SimpleNamespace(pid=p)
                                                      for p in pids[i]])


@pytest.fixture
def no_meter(monkeypatch):
  """A fresh meter singleton for the test."""
  monkeypatch.setattr(energy, '_METER', None)


def test_without_nvml_there_is_no_energy_and_no_error(no_meter, monkeypatch):
  monkeypatch.setitem(sys.modules, 'pynvml', None)  # import pynvml raises ImportError
  monkeypatch.setattr(energy, '_on_gpus', lambda: True)
  assert not energy.meter().available and energy.read_joules() is None
  assert not energy.Meter(fake_nvml(broken=True)).available  # a GPU without a counter
  ledger = ledger_lib.Ledger()
  ledger.add_since('train', ledger_lib.mark())
  report = ledger.report(forward_macs=1, full_data_examples=1)
  assert 'joules' not in ledger.to_dict() and 'energy_kwh' not in report
  assert ledger.seconds['train'] >= 0


def test_off_gpus_nvml_is_not_used(no_meter, monkeypatch):
  monkeypatch.setitem(sys.modules, 'pynvml', fake_nvml())
  monkeypatch.setattr(energy, '_on_gpus', lambda: False)
  assert energy.read_joules() is None


def test_a_fake_nvml_gives_joules_and_kwh_per_phase(no_meter, monkeypatch):
  monkeypatch.setitem(sys.modules, 'pynvml', fake_nvml((1000, 500)))
  monkeypatch.setattr(energy, '_on_gpus', lambda: True)
  assert energy.meter().available
  ledger = ledger_lib.Ledger()
  start = ledger_lib.mark()  # every read adds 1.5 J over the two GPUs
  ledger.add_since('train', start)
  ledger.add_since('eval', ledger_lib.mark())
  assert ledger.joules == {'train': pytest.approx(1.5), 'eval': pytest.approx(1.5)}
  report = ledger.report(forward_macs=1, full_data_examples=1)
  assert report['energy_kwh']['train'] == pytest.approx(1.5 / 3.6e6)
  assert report['energy_joules_total'] == pytest.approx(3.0)
  assert ledger_lib.Ledger.from_dict(ledger.to_dict()) == ledger  # checkpoints keep it


def test_a_run_records_energy_per_phase(no_meter, monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'pynvml', fake_nvml())
  monkeypatch.setattr(energy, '_on_gpus', lambda: True)
  config = tiny_config.get_config()
  config.update_from_flattened_dict({'train.num_epochs': 2, 'prune.epoch': 1})
  ledger = train.train_and_evaluate(config, str(tmp_path))['ledger']
  assert {'train', 'score', 'eval', 'checkpoint'} <= set(ledger['joules'])
  assert all(v > 0 for v in ledger['joules'].values())
  assert ledger['energy_kwh_total'] == pytest.approx(sum(ledger['joules'].values()) / 3.6e6)


def test_only_the_gpus_this_process_runs_on_are_read(no_meter, monkeypatch):
  other = os.getpid() + 1
  monkeypatch.setitem(sys.modules, 'pynvml', fake_nvml((1000, 500), pids=[[os.getpid()],
                                                                          [other]]))
  monkeypatch.setattr(energy, '_on_gpus', lambda: True)
  ledger = ledger_lib.Ledger()
  ledger.add_since('train', ledger_lib.mark())  # GPU 0 only: 1 J per read
  assert ledger.joules == {'train': pytest.approx(1.0)} and not ledger.energy_unattributed


def test_a_gpu_shared_with_another_process_leaves_the_energy_out_and_says_so(
    no_meter, monkeypatch):
  pids = [[os.getpid()], [os.getpid()]]
  monkeypatch.setitem(sys.modules, 'pynvml', fake_nvml((1000, 500), pids=pids))
  monkeypatch.setattr(energy, '_on_gpus', lambda: True)
  ledger = ledger_lib.Ledger()
  ledger.add_since('train', ledger_lib.mark())
  assert ledger.joules == {'train': pytest.approx(1.5)}
  pids[1].append(4242)  # another run starts on GPU 1 (compare.parallel, say)
  ledger.add_since('eval', ledger_lib.mark())
  ledger.add_since('train', ledger_lib.mark())
  assert ledger.joules == {}  # not a partial figure: none
  assert 'pids [4242]' in ledger.energy_unattributed
  report = ledger.report(forward_macs=1, full_data_examples=1)
  assert 'energy_kwh' not in report and 'pids [4242]' in report['energy_unattributed']
  assert ledger_lib.Ledger.from_dict(ledger.to_dict()) == ledger  # checkpoints keep it
  pids[1].remove(4242)  # it ended: the run's energy is still not its own alone
  ledger.add_since('train', ledger_lib.mark())
  assert ledger.joules == {}


def test_in_a_container_nvml_sees_no_pid_of_ours_and_one_process_is_ours(no_meter,
                                                                         monkeypatch):
  """A pid namespace hides this pid from the driver: one process listed is this run; two
  cannot be told apart."""
  pids = [[1234], []]
  monkeypatch.setitem(sys.modules, 'pynvml', fake_nvml((1000, 500), pids=pids))
  monkeypatch.setattr(energy, '_on_gpus', lambda: True)
  ledger = ledger_lib.Ledger()
  ledger.add_since('train', ledger_lib.mark())
  assert ledger.joules == {'train': pytest.approx(1.5)}
  pids[1].append(5678)
  ledger.add_since('train', ledger_lib.mark())
  assert ledger.joules == {} and 'pids [1234, 5678]' in ledger.energy_unattributed
