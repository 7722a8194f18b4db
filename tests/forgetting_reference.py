"""A host reference for the per-example table's forgetting counts and last loss.

The host-side tracker the run used before the table counted forgetting events inside the
train program (`ForgettingTracker`, formerly in methods/forgetting.py), written as a plain
loop over rows: tests feed it the same rows as the table and compare.
"""

import numpy as np

_UNSEEN, _INCORRECT, _CORRECT = -1, 0, 1


class ForgettingReference:
  """Forgetting events, ever-correct, presentations and last final-exit loss, row by row."""

  def __init__(self, num_examples: int):
    self.last = np.full(num_examples, _UNSEEN, np.int8)  # outcome of the last presentation
    self.counts = np.zeros(num_examples, np.int64)
    self.ever_correct = np.zeros(num_examples, bool)
    self.presentations = np.zeros(num_examples, np.int64)
    self.last_loss = np.full(num_examples, np.nan, np.float32)

  def update(self, index, correct, loss=None) -> None:
    """Presentations in row order: example `index[i]` was correct iff `correct[i]`;
    negative indices (padding) are skipped."""
    loss = np.zeros(len(index), np.float32) if loss is None else loss
    for i, c, l in zip(np.asarray(index), np.asarray(correct, bool), np.asarray(loss)):
      if i < 0:
        continue
      if self.last[i] == _CORRECT and not c:  # correct, then wrong: a forgetting event
        self.counts[i] += 1
      self.ever_correct[i] |= c
      self.presentations[i] += 1
      self.last[i] = _CORRECT if c else _INCORRECT
      self.last_loss[i] = l

  def presented(self) -> np.ndarray:
    return self.presentations > 0

  def never_learned(self) -> np.ndarray:
    return self.presented() & ~self.ever_correct
