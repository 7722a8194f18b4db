"""The per-example table: what each example's latest training pass saw, and its forgetting.

One row per training example (canonical index), replicated on every device and updated
inside the train program (`loop.Programs`, `table=True`) step by step, in step order.
Forgetting, InfoBatch and dynamic EEPrune read it at the start of an epoch or a pruning
round; the run writes its pass fields to last_pass/epoch{E}.npz (`whatif`) and all of it
into the checkpoint's example arrays.

Fields, per example:
  conf, correct, loss  [N, E+1] float32 / bool / float32: every exit (final last) in its
                       latest training pass;
  epoch                [N] int32: that pass's epoch; -1: never trained on;
  forget_counts        [N] int32: forgetting events (Toneva et al. 2019): the final exit
                       was correct at one presentation and wrong at the next;
  ever_correct         [N] bool: the final exit was correct at some presentation.

An example was presented iff `epoch >= 0`, and its previous presentation's outcome is
`correct[:, -1]`, so the forgetting count needs no state of its own beyond these.
"""

import jax
import jax.numpy as jnp
import numpy as np

FIELDS = ('conf', 'correct', 'loss', 'epoch', 'forget_counts', 'ever_correct')
# The fields a training pass writes per exit: last_pass/epoch{E}.npz holds these and `epoch`.
PASS_FIELDS = ('conf', 'correct', 'loss')


def empty(num_examples: int, num_outputs: int) -> dict[str, np.ndarray]:
  """A table of `num_examples` examples no step has trained on yet (host arrays)."""
  return {'conf': np.zeros((num_examples, num_outputs), np.float32),
          'correct': np.zeros((num_examples, num_outputs), bool),
          'loss': np.zeros((num_examples, num_outputs), np.float32),
          'epoch': np.full(num_examples, -1, np.int32),
          'forget_counts': np.zeros(num_examples, np.int32),
          'ever_correct': np.zeros(num_examples, bool)}


def record(table: dict[str, jax.Array], rows: dict[str, jax.Array],
           epoch: jax.Array) -> dict[str, jax.Array]:
  """The table after one train step's rows (`index` [B], `conf`/`correct`/`loss` [B, E+1]).

  Traced. Within one step an index appears at most once (a batch draws without
  replacement), so each row's forgetting event is read from the previous pass before
  that pass is overwritten. Rows with a negative index (padding) change nothing.
  """
  n = table['epoch'].shape[0]
  idx = jnp.where(rows['index'] < 0, n, rows['index'])  # out of range: dropped below
  get = lambda a, fill: a.at[idx].get(mode='fill', fill_value=fill)
  put = lambda a, v: a.at[idx].set(v, mode='drop')
  final = rows['correct'][:, -1]
  seen_before = get(table['epoch'], -1) >= 0
  forgotten = seen_before & get(table['correct'][:, -1], False) & ~final
  return {**{k: put(table[k], rows[k]) for k in PASS_FIELDS},
          'epoch': put(table['epoch'], epoch),
          'forget_counts': table['forget_counts'].at[idx].add(
              forgotten.astype(jnp.int32), mode='drop'),
          'ever_correct': put(table['ever_correct'], get(table['ever_correct'], False) | final)}


# --- Host side: what methods read from a table copied to the host -------------------------

def presented(table: dict[str, np.ndarray]) -> np.ndarray:
  """Trained on at least once, bool [N]."""
  return np.asarray(table['epoch']) >= 0


def never_learned(table: dict[str, np.ndarray]) -> np.ndarray:
  """Trained on, but the final exit was never correct, bool [N]."""
  return presented(table) & ~np.asarray(table['ever_correct'], bool)


def last_loss(table: dict[str, np.ndarray]) -> np.ndarray:
  """The final exit's loss in each example's latest training pass; NaN if never trained."""
  return np.where(presented(table), np.asarray(table['loss'])[:, -1],
                  np.float32(np.nan)).astype(np.float32)
