"""Pruning rounds: when they run, the scores each method needs, and the new keep mask."""

import time
from typing import Any

from absl import logging
import ml_collections
import numpy as np

from eeprune_jax import baselines
from eeprune_jax import masks
from eeprune_jax import pruning_methods
from eeprune_jax import run_state as run_state_lib
from eeprune_jax import steps as steps_lib
from eeprune_jax import tracking
from eeprune_jax import workdir as workdir_lib


def prune_epochs(config: ml_collections.ConfigDict) -> list[int]:
  """The epochs at whose start a pruning round runs."""
  prune, num_epochs = config.prune, config.train.num_epochs
  if prune.method == 'none' or prune.method in pruning_methods.DYNAMIC_METHODS:
    return []
  if prune.every > 0:
    return list(range(prune.epoch, num_epochs, prune.every))
  return [prune.epoch] if prune.epoch < num_epochs else []


def infobatch_epoch(config: ml_collections.ConfigDict, epoch: int,
                    last_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """InfoBatch's keep mask and loss weights for `epoch` (full data outside its window)."""
  n, p = len(last_loss), config.prune
  if epoch < p.epoch or baselines.infobatch_anneal(epoch, config.train.num_epochs,
                                                   p.infobatch_anneal):
    return np.ones(n, bool), np.ones(n, np.float32)
  # Seeded by (seed, epoch), so a resumed run redraws the same epoch.
  return baselines.infobatch_epoch(last_loss, p.fraction,
                                   np.random.default_rng([config.seed, epoch]))


def _seed_states(run: Any, state: steps_lib.TrainState, state_of_run: run_state_lib.RunState,
                 epoch: int) -> list[steps_lib.TrainState]:
  """The run's state plus `score_seeds - 1` networks trained from other seeds to `epoch`."""
  states, config = [state], run.config
  for k in range(1, config.prune.score_seeds):
    extra = run.init_state(config.seed + k)
    for e in range(epoch):
      extra = run.programs.run_epoch(
          extra, epoch=e, keep=None, num_outputs=run.num_exits + 1,
          exit_weights=steps_lib.exit_loss_weights(config.train, run.num_exits, e)).state
      state_of_run.ledger.examples_trained_for_scoring += (
          run.pipeline.steps_per_epoch(None) * config.train.batch_size)
    states.append(extra)
  return states


def _method_scores(run: Any, state: steps_lib.TrainState, rs: run_state_lib.RunState,
                   stats: tracking.ExampleStats, epoch: int) -> dict[str, np.ndarray] | None:
  """The per-example arrays `prune.method` selects by, in index order."""
  method, n, ledger = run.config.prune.method, run.num_train, rs.ledger
  start = time.time()
  if method in ('el2n', 'grand'):
    states = _seed_states(run, state, rs, epoch)
  if pruning_methods.needs_scores(method):
    runs = []
    for s in (states if method == 'el2n' else [state]):
      scores = run.programs.score(s, n)
      runs.append(scores['el2n'][:, -1])
      ledger.examples_scored += n
      ledger.scoring_passes += 1
    scores = {**scores, 'el2n_runs': np.stack(runs)} if method == 'el2n' else scores
  elif method == 'grand':
    p_grand = baselines.make_grand_step(run.mesh, run.config.prune.grand_chunk)
    runs = [baselines.grand_scores(p_grand, s, run.pipeline.eval_batches('train'), n)
            for s in states]
    ledger.examples_grad_scored += n * len(states)
    ledger.scoring_passes += len(states)
    scores = {'index': np.arange(n), 'label': run.pipeline.train_labels,
              'grand_runs': np.stack(runs)}
  elif method == 'forgetting':
    stats.flush()
    f = stats.forgetting
    return {'index': np.arange(n), 'label': run.pipeline.train_labels,
            'forget_counts': f.counts(), 'never_learned': f.never_learned(),
            'presented': f.presented()}
  else:
    return None
  ledger.add_time('score', time.time() - start)
  return scores


def prune_round(run: Any, state: steps_lib.TrainState, keep: np.ndarray,
                rs: run_state_lib.RunState, stats: tracking.ExampleStats, epoch: int,
                target: int) -> np.ndarray:
  """Scores the training set as the method needs, prunes, writes scores and mask."""
  config, round_index = run.config, rs.rounds_done
  scores = _method_scores(run, state, rs, stats, epoch)
  result = pruning_methods.prune(config.prune, scores=scores, labels=run.pipeline.train_labels,
                                 prior_keep=keep, target_pruned=target, rng=rs.rng)
  mstats = masks.mask_stats(result.keep, run.pipeline.train_labels, run.info.num_classes)
  info = {'round': round_index, 'epoch': epoch, 'step': int(state.step),
          'target_pruned': result.target_pruned, 'shortfall': result.shortfall,
          'cutoff': None if np.isnan(result.cutoff) else result.cutoff,
          'num_pruned': mstats['num_pruned'], 'pruned_fraction': mstats['pruned_fraction']}
  if result.shortfall:
    logging.warning('Pruning round %d: only %d of the %d examples to prune were eligible.',
                    round_index, result.target_pruned - result.shortfall, result.target_pruned)
  logging.info('Pruning round %d: %s', round_index, info)
  if run.is_writer:
    arrays = dict(scores) if scores is not None else {
        'index': np.arange(run.num_train), 'label': run.pipeline.train_labels}
    arrays['keep'] = result.keep
    workdir_lib.write_npz(run.paths.scores_round(round_index), **arrays)
    workdir_lib.write_npz(run.paths.scores, **arrays)
    workdir_lib.write_npy(run.paths.keep_mask, result.keep)
  rs.rounds.append(info)
  rs.rounds_done = round_index + 1
  return result.keep

