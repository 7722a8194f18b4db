"""The training order of an epoch, one rule for every backend that samples globally.

`train_order(seed, epoch, kept, batch_size)`: `np.random.default_rng((seed, epoch))`
permutes the kept indices; the permutation is cut into num_kept // batch_size global
batches (the remainder is dropped). Every process computes the same order, so the order
depends only on (seed, epoch, keep mask), and a global batch holds the same examples
whichever backend (device, grain) or process count serves it.
"""

import numpy as np


def train_order(seed: int, epoch: int, kept: np.ndarray, batch_size: int) -> np.ndarray:
  """[len(kept) // batch_size, batch_size] kept indices of the epoch, in training order."""
  steps = len(kept) // batch_size
  order = np.random.default_rng((seed, epoch)).permutation(kept)
  return order[:steps * batch_size].reshape(steps, batch_size)


def process_columns(order: np.ndarray, process_index: int, process_count: int
                    ) -> np.ndarray:
  """This process's share of each global batch of `order` [steps, B]: the rows its
  devices hold (`parallel.host_to_global` puts process p's rows at [p*B/P, (p+1)*B/P))."""
  per = order.shape[1] // process_count
  return order[:, process_index * per:(process_index + 1) * per]
