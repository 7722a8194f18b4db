"""The host-side state of a run that checkpoints carry beside the train state."""

import dataclasses
from typing import Any

import numpy as np

from eeprune_jax import ledger as ledger_lib


@dataclasses.dataclass
class RunState:
  """Where a run is, what it did, and the host RNG that decides random pruning."""
  epoch: int = 0  # epochs finished
  step_in_epoch: int = 0  # steps of epoch `epoch` finished (a run preempted mid-epoch)
  rounds_done: int = 0  # pruning rounds finished
  rounds: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one per round
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one per epoch
  ledger: ledger_lib.Ledger = dataclasses.field(default_factory=ledger_lib.Ledger)
  rng: np.random.Generator = dataclasses.field(default_factory=np.random.default_rng)

  @classmethod
  def new(cls, seed: int) -> 'RunState':
    """The state of a run that has not started."""
    return cls(rng=np.random.default_rng(seed))

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready (the checkpoint's `progress` item)."""
    return {'epoch': self.epoch, 'step_in_epoch': self.step_in_epoch,
            'rounds_done': self.rounds_done, 'rounds': self.rounds, 'history': self.history,
            'ledger': self.ledger.to_dict(), 'rng_state': self.rng.bit_generator.state}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'RunState':
    """Inverse of `to_dict`."""
    rng = np.random.default_rng()
    rng.bit_generator.state = d['rng_state']
    return cls(epoch=d['epoch'], step_in_epoch=d['step_in_epoch'],
               rounds_done=d['rounds_done'], rounds=list(d['rounds']),
               history=list(d['history']), ledger=ledger_lib.Ledger.from_dict(d['ledger']),
               rng=rng)
