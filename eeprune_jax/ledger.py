"""The cost ledger: what a run spent on training, scoring and evaluation.

MACs are multiply-accumulates per example from `models.count_macs`. A training example
costs 3x its forward MACs (forward, plus a backward pass of about twice the forward: the
usual convention of Kaplan et al. 2020); a scored example costs one forward pass.
"""

import dataclasses
from typing import Any

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

  def add_time(self, phase: str, seconds: float) -> None:
    """Adds wall time to a phase."""
    self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready counters (for checkpoints)."""
    return dataclasses.asdict(self)

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
    }
