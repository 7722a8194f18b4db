"""Per-example statistics gathered from training steps, for forgetting events and InfoBatch.

The loop's train program returns, per step and example of its dispatch, the index,
whether the final exit was correct and its loss ([steps, batch] arrays, index -1 for
steps the dispatch did not run). Those rows stay on device until `flush` (at pruning
rounds, epoch ends and checkpoints), so tracking adds no host round-trip per step.
"""

from typing import Any

import numpy as np

from eeprune_jax import parallel
from eeprune_jax.methods import forgetting as forgetting_lib


class ExampleStats:
  """Forgetting events and the latest training loss of every example."""

  def __init__(self, num_examples: int, enabled: bool):
    self.enabled = enabled
    self.forgetting = forgetting_lib.ForgettingTracker(num_examples)
    self.last_loss = np.full(num_examples, np.nan, np.float32)
    # Every exit's view of each example's latest training pass (`loop.new_last_pass`),
    # copied to the host after every epoch when the run keeps it; None otherwise.
    self.last_pass: dict[str, np.ndarray] | None = None
    self._pending: list[Any] = []

  def add(self, rows: dict[str, Any]) -> None:
    """Queues one step's per-example rows (device arrays); a no-op when disabled."""
    if self.enabled:
      self._pending.append(rows)

  def flush(self) -> None:
    """Moves queued rows to the host statistics, in step order."""
    for rows in self._pending:
      rows = {k: v.reshape(-1) for k, v in parallel.global_to_host(rows).items()}
      rows = {k: v[rows['index'] >= 0] for k, v in rows.items()}  # in step order
      self.forgetting.update(rows['index'], rows['correct'])
      self.last_loss[rows['index']] = rows['loss']
    self._pending.clear()

  def to_arrays(self) -> dict[str, np.ndarray]:
    """The statistics as arrays [N] for the checkpoint."""
    self.flush()
    state = self.forgetting.state_dict()
    return {'last_loss': self.last_loss,
            **{f'forget_{k}': np.asarray(v) for k, v in state.items() if k != 'num_examples'}}

  def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
    """Restores `to_arrays()` output."""
    self.last_loss = np.asarray(arrays['last_loss'], np.float32)
    self.forgetting = forgetting_lib.ForgettingTracker.from_state_dict(
        {'num_examples': len(self.last_loss),
         **{k[len('forget_'):]: v for k, v in arrays.items() if k.startswith('forget_')}})
