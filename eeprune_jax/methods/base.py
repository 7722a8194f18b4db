"""The pruning-method protocol and its registry.

A method says what it needs from the training loop (`Needs`), computes per-example scores
at a pruning round (`scores`), and turns them into a priority (`priority`). THE
DIRECTION: `masks.prune_top` prunes the HIGHEST priority first, so a method returns a
priority that is high at the end it prunes (for every built-in method, the easy end) and
an `eligible` mask of the examples it may prune at all. A method that prunes afresh every
epoch instead of in rounds (InfoBatch) implements `epoch_mask`.

The registry maps `config.prune.method` to a method; the loop, `config_checks` and
`compare` ask it and never switch on a name.
"""

import dataclasses
from typing import Any, Callable, Mapping

import ml_collections
import numpy as np

from eeprune_jax import masks
from eeprune_jax import registry

Scores = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Needs:
  """What a method needs from the training loop."""
  # A pass over the training set at a pruning round (forward or per-example gradients):
  # its time is charged to the ledger's 'score' phase.
  scoring_pass: bool = False
  # A fresh keep mask and per-example loss weights every epoch (`Method.epoch_mask`)
  # instead of pruning rounds.
  epoch_mask: bool = False
  # The per-example table (`example_table`: every exit's latest training pass of each
  # example, its epoch, forgetting counts), updated by every train step and handed to the
  # method on the host (`RoundContext.table`, `epoch_mask`'s `table`).
  example_table: bool = False


@dataclasses.dataclass
class RoundContext:
  """What a pruning round offers `Method.scores`; passes it runs are charged to `ledger`."""
  config: ml_collections.ConfigDict  # the run's config
  state: Any  # the run's TrainState at the round
  epoch: int  # the round runs at the start of this epoch
  labels: np.ndarray  # int [N], canonical index order
  mesh: Any  # the data-parallel jax.sharding.Mesh
  pipeline: Any  # the run's data.Pipeline
  ledger: Any  # the run's ledger.Ledger
  # The per-example table on the host (`example_table`), as of the round; None when the
  # run keeps none (`needs.example_table` False and `train.last_pass_scores` off).
  table: dict[str, np.ndarray] | None
  # The scoring pass of a train state: per-example exit statistics in index order.
  score: Callable[[Any], dict[str, np.ndarray]]
  # A pass of a per-example step over the training set (`loop.Programs.per_example`):
  # (state, step) -> the step's rows in index order. Not charged: the method charges it.
  per_example: Callable[[Any, Callable[..., Any]], dict[str, np.ndarray]]
  # The run's state plus `prune.score_seeds - 1` networks trained from other seeds to
  # `epoch` (EL2N and GraNd average over them).
  seed_states: Callable[[], list[Any]]

  @property
  def num_examples(self) -> int:
    """Training examples N."""
    return len(self.labels)


class Method:
  """A pruning method. Subclass it, set `name` and `needs`, implement what you need."""
  name: str = ''
  needs: Needs = Needs()
  prunes: bool = True  # False: a full-data baseline ('none'), no rounds, no mask.
  # It prunes by the confidence of the early exit `prune.exit`: the config needs an early
  # exit, and the comparison report plots that confidence from its scores.npz.
  early_exit: bool = False
  # `prune.mode='threshold'` applies: the priority is a confidence in [0, 1] and every
  # eligible example above `prune.threshold` is pruned. Otherwise the mode is ignored.
  threshold_mode: bool = False
  # `compare` runs it once per fraction and seed with `prune.cost_fraction` set to the
  # measured cost of the pruned run it is matched with (the cost-matched baseline).
  matches_cost: bool = False
  # Named variants `compare` runs beside the method: name -> config overrides
  # ('section.field' -> value), e.g. the method with its exit moved.
  variants: Mapping[str, Mapping[str, Any]] = {}

  def scores(self, ctx: RoundContext) -> dict[str, np.ndarray]:
    """Per-example arrays [N] (or [runs, N]) at a pruning round; saved in scores.npz."""
    del ctx
    return {}

  def schedule_epochs(self, config: ml_collections.ConfigDict) -> float:
    """How many epochs the run trains, fractional allowed: the learning-rate schedule
    (warm-up, cosine to zero) is compressed to them and a fractional last epoch stops
    part-way. Every built-in method but `cost_matched` trains `num_epochs`."""
    return float(config.train.num_epochs)

  def priority(self, scores: Scores, *, labels: np.ndarray, rng: np.random.Generator,
               config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """(priority float [N], eligible bool [N]): the highest eligible priority goes first."""
    raise NotImplementedError(f'prune.method={self.name!r} has no priority.')

  def epoch_mask(self, config: ml_collections.ConfigDict, epoch: int,
                 table: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(keep bool [N], loss weight float32 [N]) of `epoch`, for `needs.epoch_mask` methods,
    from the per-example table (`example_table`, on the host) as of the epoch's start."""
    raise NotImplementedError(f'prune.method={self.name!r} has no per-epoch mask.')


_REGISTRY: registry.Registry[Method] = registry.Registry('prune.method')


def register(cls: type[Method]) -> type[Method]:
  """Class decorator: registers an instance of `cls` under `cls.name`."""
  if not cls.name:
    raise ValueError(f'{cls.__name__} has no `name`.')
  _REGISTRY.add(cls.name, cls)
  return cls


unregister = _REGISTRY.remove
names = _REGISTRY.names
get = _REGISTRY.get


def prune(prune_config: ml_collections.ConfigDict, *, scores: Scores | None,
          labels: np.ndarray, prior_keep: np.ndarray | None, target_pruned: int,
          rng: np.random.Generator) -> masks.PruneResult:
  """Applies `prune_config.method` and returns the new (only shrinking) keep mask."""
  method = get(prune_config.method)
  if not method.prunes:
    return masks.PruneResult(keep=masks.as_keep(prior_keep, len(labels)),
                             target_pruned=0, shortfall=0, cutoff=float('nan'))
  if method.needs.epoch_mask:
    raise ValueError(f'prune.method={method.name!r} prunes per epoch in the train loop, '
                     'not in rounds.')
  if scores is None and (method.needs.scoring_pass or method.needs.example_table):
    raise ValueError(f'prune.method={method.name!r} needs per-example scores.')
  priority, eligible = method.priority(scores or {}, labels=labels, rng=rng,
                                       config=prune_config)
  if method.threshold_mode and prune_config.mode == 'threshold':
    return masks.prune_above_threshold(eligible, priority, prune_config.threshold, prior_keep)
  if prune_config.class_balanced:
    return masks.prune_top_per_class(priority, eligible, target_pruned, labels, prior_keep)
  return masks.prune_top(priority, eligible, target_pruned, prior_keep)

