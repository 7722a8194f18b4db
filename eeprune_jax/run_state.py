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


@dataclasses.dataclass
class Carry:
  """What a training run changes epoch by epoch and checkpoints."""
  state: Any  # the TrainState (replicated on the mesh)
  keep: np.ndarray  # bool [N]: the keep mask of the pruning rounds so far
  # This epoch's mask and loss weights (all-in but for per-epoch methods, `epoch_mask`).
  epoch_keep: np.ndarray
  epoch_weight: np.ndarray
  table: dict[str, Any]  # the per-example table on device (`example_table`); {}: none
  progress: RunState
  step: int  # global train steps done (host-side: the loop never reads the device's)

  @classmethod
  def new(cls, state: Any, table: dict[str, Any], num_examples: int, seed: int) -> 'Carry':
    """A run that has not started: every example kept."""
    return cls(state=state, keep=np.ones(num_examples, bool),
               epoch_keep=np.ones(num_examples, bool),
               epoch_weight=np.ones(num_examples, np.float32), table=table,
               progress=RunState.new(seed), step=int(state.step))

  def example_arrays(self, host_table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The checkpoint's per-example arrays [N, ...], the table's given on the host."""
    return {'keep': self.keep, 'epoch_keep': self.epoch_keep, 'epoch_weight': self.epoch_weight,
            **{f'table_{k}': v for k, v in host_table.items()}}

  @property
  def train_keep(self) -> np.ndarray:
    """The examples this epoch trains on."""
    return self.keep & self.epoch_keep
