"""The cost ledger: what a run spent on training, scoring and evaluation.

MACs are multiply-accumulates per example from `models.count_macs`. A training example
costs 3x its forward MACs (forward, plus a backward pass of about twice the forward: the
usual convention of Kaplan et al. 2020); a scored example costs one forward pass.
Where NVIDIA's management library answers (`energy.py`), each phase's GPU energy is
recorded too (`joules`; the report adds kWh); elsewhere the energy fields are absent, and
where other processes computed on the run's GPUs `energy_unattributed` says so instead.
"""

import dataclasses
import time
from typing import Any

from eeprune_jax import energy

Mark = tuple[float, float | None]


def mark() -> Mark:
  """The start of a phase: (wall time, GPU energy in joules or None)."""
  return time.time(), energy.read_joules()

TRAIN_MACS_PER_FORWARD = 3


@dataclasses.dataclass
class Ledger:
  """Counters a run accumulates; saved in checkpoints so a resumed run keeps counting."""
  examples_trained: int = 0
  train_steps: int = 0
  examples_scored: int = 0  # forward passes of the scoring pass
  examples_grad_scored: int = 0  # per-example gradients (GraNd): ~3 forward passes each
  examples_trained_for_scoring: int = 0  # extra networks trained for EL2N/GraNd seeds
  scoring_passes: int = 0
  examples_evaluated: int = 0
  # Package import to the first train dispatch (data load, init, compile), summed over the
  # run's starts; it overlaps the first epoch's 'train' seconds, so it stays out of them.
  startup_seconds: float = 0.0
  seconds: dict[str, float] = dataclasses.field(
      default_factory=lambda: {'train': 0.0, 'score': 0.0, 'eval': 0.0, 'checkpoint': 0.0})
  # GPU energy per phase in joules (NVML); empty where no GPU reports it.
  joules: dict[str, float] = dataclasses.field(default_factory=dict)
  # Why the run's GPU energy is left out: other processes shared its GPUs ('' if not).
  energy_unattributed: str = ''

  def add_time(self, phase: str, seconds: float) -> None:
    """Adds wall time to a phase."""
    self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

  def add_since(self, phase: str, start: Mark) -> float:
    """Adds the wall time and GPU energy since `start` (`mark()`) to a phase; the seconds."""
    seconds = time.time() - start[0]
    self.add_time(phase, seconds)
    now = energy.read_joules() if start[1] is not None else None
    if now is not None and not self.energy_unattributed:
      self.joules[phase] = self.joules.get(phase, 0.0) + now - start[1]
    elif energy.unattributed():  # a part of the run's energy is not its own: none of it
      self.energy_unattributed = energy.unattributed()
      self.joules.clear()
    return seconds

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready counters (for checkpoints); no `joules` where no energy was measured."""
    d = dataclasses.asdict(self)
    if not d['joules']:
      del d['joules']
    if not d['energy_unattributed']:
      del d['energy_unattributed']
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'Ledger':
    """Inverse of `to_dict`."""
    return cls(**d)

  def report(self, *, forward_macs: int, full_data_examples: int) -> dict[str, Any]:
    """The ledger with MACs and the cost relative to full-data training, JSON-ready.

    `full_data_examples` is what the same schedule trains on without pruning
    (num_epochs x steps per epoch on the full data x batch size).
    """
    train_macs = self.examples_trained * TRAIN_MACS_PER_FORWARD * forward_macs
    score_macs = (self.examples_scored + TRAIN_MACS_PER_FORWARD * (
        self.examples_grad_scored + self.examples_trained_for_scoring)) * forward_macs
    full_macs = full_data_examples * TRAIN_MACS_PER_FORWARD * forward_macs
    return {
        **self.to_dict(),
        'forward_macs_per_example': forward_macs,
        'train_macs': train_macs,
        'score_macs': score_macs,
        'total_macs': train_macs + score_macs,
        'full_data_examples': full_data_examples,
        'full_data_train_macs': full_macs,
        'examples_trained_vs_full_data': self.examples_trained / full_data_examples,
        'cost_vs_full_data': (train_macs + score_macs) / full_macs,
        'wall_seconds_total': sum(self.seconds.values()),
        **({'energy_kwh': {k: v / 3.6e6 for k, v in self.joules.items()},
            'energy_joules_total': sum(self.joules.values()),
            'energy_kwh_total': sum(self.joules.values()) / 3.6e6} if self.joules else {}),
    }
