"""Pruning rounds: when they run, the scores the method asks for, and the new keep mask."""

import functools

from absl import logging
import ml_collections
import numpy as np

from eeprune_jax import ledger as ledger_lib
from eeprune_jax import masks
from eeprune_jax import methods
from eeprune_jax import run_context
from eeprune_jax import run_state as run_state_lib
from eeprune_jax import run_summary
from eeprune_jax import seed_networks
from eeprune_jax import steps as steps_lib
from eeprune_jax import workdir as workdir_lib


def prune_epochs(config: ml_collections.ConfigDict) -> list[int]:
  """The epochs at whose start a pruning round runs."""
  prune, num_epochs = config.prune, config.train.num_epochs
  method = methods.get(prune.method)
  if not method.prunes or method.needs.epoch_mask:
    return []
  if prune.every > 0:
    return list(range(prune.epoch, num_epochs, prune.every))
  return [prune.epoch] if prune.epoch < num_epochs else []


def _seed_states(run: run_context.RunContext, state: steps_lib.TrainState,
                 state_of_run: run_state_lib.RunState, epoch: int
                 ) -> list[steps_lib.TrainState]:
  """The run's state plus `score_seeds - 1` networks trained from other seeds to `epoch`
  (checkpointed and preemptible: `seed_networks`)."""
  states, config = [state], run.config

  def charge(epochs: int) -> None:
    state_of_run.ledger.examples_trained_for_scoring += (
        epochs * run.pipeline.steps_per_epoch(None) * config.train.batch_size)

  for k in range(1, config.prune.score_seeds):
    # The run's preemption check, at the run's step (the seed networks' do not count).
    should_stop = functools.partial(run.preemption.should_stop, int(state.step))
    states.append(seed_networks.train_to(run, k, epoch, charge=charge,
                                         should_stop=should_stop))
  return states


def _context(run: run_context.RunContext, state: steps_lib.TrainState,
             rs: run_state_lib.RunState, table: dict[str, np.ndarray] | None, epoch: int
             ) -> methods.RoundContext:
  """What the round offers the method: the state, the data, passes charged to the ledger."""
  n = run.num_train

  def score(s: steps_lib.TrainState) -> dict[str, np.ndarray]:
    scores = run.programs.score(s, n)
    rs.ledger.examples_scored += n
    rs.ledger.scoring_passes += 1
    return scores

  return methods.RoundContext(
      config=run.config, state=state, epoch=epoch, labels=run.pipeline.train_labels,
      mesh=run.mesh, pipeline=run.pipeline, ledger=rs.ledger, table=table, score=score,
      per_example=lambda s, step: run.programs.per_example(s, 'train', step, n),
      seed_states=lambda: _seed_states(run, state, rs, epoch))


def prune_round(run: run_context.RunContext, state: steps_lib.TrainState, keep: np.ndarray,
                rs: run_state_lib.RunState, table: dict[str, np.ndarray] | None, epoch: int,
                target: int) -> np.ndarray:
  """Scores the training set as the method asks, prunes, writes scores and mask.

  `table`: the per-example table on the host as of the round (`example_table`), or None.
  """
  config, round_index, labels = run.config, rs.rounds_done, run.pipeline.train_labels
  method = methods.get(config.prune.method)
  start = ledger_lib.mark()
  scores = method.scores(_context(run, state, rs, table, epoch))
  if method.needs.scoring_pass:
    rs.ledger.add_since('score', start)
  result = methods.prune(config.prune, scores=scores, labels=labels, prior_keep=keep,
                         target_pruned=target, rng=rs.rng)
  mstats = masks.mask_stats(result.keep, labels, run.info.num_classes)
  info = {'round': round_index, 'epoch': epoch, 'step': int(state.step),
          'target_pruned': result.target_pruned, 'shortfall': result.shortfall,
          'cutoff': None if np.isnan(result.cutoff) else result.cutoff,
          'num_pruned': mstats['num_pruned'], 'pruned_fraction': mstats['pruned_fraction']}
  info['emptied_classes'] = run_summary.warn_emptied_classes(
      result.keep, run.pipeline.train_labels, run.info.class_names,
      config.prune.class_warning_share, info)
  if result.shortfall:
    logging.warning('Pruning round %d: only %d of the %d examples to prune were eligible.',
                    round_index, result.target_pruned - result.shortfall, result.target_pruned)
  logging.info('Pruning round %d: %s', round_index, info)
  if run.is_writer:
    arrays = {'index': np.arange(run.num_train), 'label': labels, **scores,
              'keep': result.keep}
    workdir_lib.write_npz(run.paths.scores_round(round_index), **arrays)
    workdir_lib.write_npz(run.paths.scores, **arrays)
    workdir_lib.write_npy(run.paths.keep_mask, result.keep)
  rs.rounds.append(info)
  rs.rounds_done = round_index + 1
  return result.keep
