"""The epoch loop: one jitted program per dispatch, many train steps per program.

A training epoch is a handful of dispatches of one program, `train_steps`: it gathers and
augments each step's batch from the feed (`data.Pipeline`), computes the learning rate
from the step counter, takes the step and adds its metrics to running (sum, count) sums,
all on device, for up to `steps_per_dispatch` steps (a `fori_loop`; one step, without a
loop, on CPUs). The host uploads
the epoch's index order once, reads the sums of the previous dispatch while the next one
runs, and never sends anything per step. Evaluation is one program over the whole split;
every per-example pass (scoring, GraNd's gradient norms) is one program per feed too,
`Programs.per_example` with the pass's per-batch step traced inside. The tf.data and
grain backends feed one host batch per dispatch through the same programs.
"""

import dataclasses
import functools
import signal
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from eeprune_jax import data as data_lib
from eeprune_jax import example_table
from eeprune_jax import parallel
from eeprune_jax import scoring
from eeprune_jax import steps as steps_lib

P = jax.sharding.PartitionSpec
_REPL, _ROWS = P(), P(None, parallel.BATCH_AXIS)
# A per-example pass's step: (replicated state, this device's rows of a batch) -> rows.
PerExampleStep = Callable[[Any, dict[str, jax.Array]], dict[str, jax.Array]]


class Preemption:
  """Turns a preemption notice (SIGTERM: TPU maintenance, spot reclaim) into a stop that every
  process takes at the same step, checked after every dispatch without a device collective.

  One process: a SIGTERM handler sets a flag. Several (jax.distributed): JAX's coordination
  service catches SIGTERM itself (jax.distributed.initialize installs its notifier, as Orbax's
  `reached_preemption` relies on) and agrees on a sync point, one call past the furthest
  process, over RPC; every process calls it after every dispatch and all of them see True at
  the same call, so at the same train step. Once True, it stays True.
  """

  def __init__(self):
    self.requested = False
    self._calls, self._stopping = 0, False
    self._multiprocess = jax.process_count() > 1
    self._previous = None
    if not self._multiprocess:  # JAX's notifier owns SIGTERM in a multi-process run
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning('SIGTERM received: saving a checkpoint and exiting.')
    self.requested = True

  def should_stop(self, step: int) -> bool:  # pylint: disable=unused-argument
    """Whether to stop now: the same answer at the same call on every process."""
    if self._stopping:
      return True
    if self._multiprocess:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      # The call count, not the step: the sync protocol needs one id per call, the same
      # on every process, and the steps of one dispatch are many on accelerators.
      self._calls += 1
      self._stopping = multihost_utils.reached_preemption_sync_point(self._calls)
      if self._stopping:
        logging.warning('Preemption notice: every process stops after train step %d.', step)
    else:
      self._stopping = self.requested
    return self._stopping

  def restore(self) -> None:
    """Puts the previous SIGTERM handler back."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def steps_per_dispatch(train_config: ml_collections.ConfigDict) -> int:
  """Train steps per dispatch: `train.steps_per_dispatch`, or for 0 (auto) one on CPUs
  and `log_every_steps` on accelerators.

  Many steps per dispatch hide the host's per-dispatch work behind the accelerator's. On
  the CPU backend there is no such work to hide, and XLA:CPU runs a train step inside a
  loop 3-4x slower than the same step dispatched alone (docs/benchmarks.md).
  """
  if train_config.steps_per_dispatch > 0:
    return train_config.steps_per_dispatch
  if jax.default_backend() == 'cpu':
    return 1
  return max(1, train_config.log_every_steps)


@dataclasses.dataclass(frozen=True)
class EpochPlan:
  """Which epoch `Programs.run_epoch` trains, on what, and from where to where."""
  epoch: int
  keep: np.ndarray | None  # the examples it trains on (None: all)
  exit_weights: np.ndarray  # each early exit's loss weight this epoch
  num_outputs: int  # exits + 1 (the metric sums' width)
  example_weight: jax.Array | None = None  # per-example loss weights (weighted programs)
  first_step: int = 0  # a resumed epoch starts here
  max_steps: int | None = None  # ends the epoch after this many steps (a fractional epoch)


class EpochObserver:
  """What the epoch loop tells its caller and asks it; these defaults ignore and go on."""

  def dispatched(self, steps: int) -> None:
    """After each dispatch, with its number of train steps (ledger, progress bar)."""

  def logged(self, step_in_epoch: int, sums: dict[str, np.ndarray]) -> None:
    """Host metric sums at every `log_every_steps` boundary and at the epoch's end."""

  def should_stop(self) -> bool:
    """Asked after every dispatch, the last too: True stops the epoch (preemption)."""
    return False


@dataclasses.dataclass
class EpochOutcome:
  """What `Programs.run_epoch` leaves: the state, the epoch's metric sums, where it stopped."""
  state: steps_lib.TrainState
  sums: dict[str, np.ndarray]
  steps_done: int  # steps of this epoch done, counting those before `first_step`
  preempted: bool
  table: dict[str, jax.Array]  # the updated per-example table ({} when the run keeps none)


def _record_pass(table: dict[str, jax.Array], per_example: dict[str, jax.Array],
                 epoch: jax.Array) -> dict[str, jax.Array]:
  """Writes one step's per-example rows (every device's) into the replicated table."""
  rows = {k: per_example[k] for k in ('index', *example_table.PASS_FIELDS)}
  # Gathered as device-invariant values: every device then holds the same table.
  rows = jax.lax.all_gather(rows, parallel.BATCH_AXIS, tiled=True, to='invarying')
  return example_table.record(table, rows, epoch)


# --- The programs: one device's shard inside shard_map ---------------------------------
# Each program is a function of a frozen `*Program` value holding everything its trace
# reads besides its arguments (no data). `_compiled` keeps one jitted program per value,
# so every run of a process with equal values (a comparison's runs, EL2N's networks, a
# resumed run in tests) reuses the traced, lowered and compiled program.


@dataclasses.dataclass(frozen=True)
class TrainProgram:
  """Up to `steps_per_dispatch` train steps per dispatch: see `Programs`."""
  reader: data_lib.FeedReader
  train_config: ml_collections.FrozenConfigDict
  schedule_scale: float
  steps_per_dispatch: int
  weighted: bool


def _train_steps(program: TrainProgram, state, sums, cursor, feed, consts, table):
  """Up to `steps_per_dispatch` train steps from step `cursor` of the epoch."""
  k = program.steps_per_dispatch
  n = jnp.minimum(k, consts['stop'] - cursor)

  def body(i, carry):
    state, sums, table = carry
    step = cursor + i
    batch = program.reader.local_batch(feed, step, consts['epoch'], train=True)
    progress = consts['epoch'].astype(jnp.float32) + step / consts['steps']
    hparams = {'lr': steps_lib.learning_rate(program.train_config,
                                             progress * program.schedule_scale),
               'exit_weights': consts['exit_weights']}
    if program.weighted:
      hparams['example_weight'] = consts['example_weight'][batch['index']]
    global_step = state.step
    state, metrics, per_example = steps_lib.train_step(
        state, batch, hparams, program.train_config.label_smoothing)
    sums = steps_lib.accumulate(sums, metrics, global_step)
    if table:  # an empty table: a network trained beside the run (EL2N seeds)
      table = _record_pass(table, per_example, consts['epoch'])
    return state, sums, table

  carry = (state, sums, table)
  if k == 1:  # straight-line code: no loop for XLA to run
    state, sums, table = body(0, carry)
    return state, sums, cursor + 1, table
  state, sums, table = jax.lax.fori_loop(0, n, body, carry)
  return state, sums, cursor + n, table


@dataclasses.dataclass(frozen=True)
class EvalProgram:
  """The eval metrics of `num_batches` batches of a feed."""
  reader: data_lib.FeedReader
  num_batches: int


def _eval_pass(program: EvalProgram, state, sums, feed):
  """Adds the eval metrics of every batch of the feed to `sums`."""
  def body(s, sums):
    batch = program.reader.local_batch(feed, s, jnp.int32(0), train=False)
    metrics = steps_lib.eval_step(state, batch)
    return jax.tree.map(jnp.add, sums, metrics)
  return jax.lax.fori_loop(0, program.num_batches, body, sums)


@dataclasses.dataclass(frozen=True)
class PerExampleProgram:
  """`step_fn`'s rows of every one of `num_batches` batches of a feed."""
  reader: data_lib.FeedReader
  num_batches: int
  step_fn: Callable[..., Any]  # keyed by identity: pass the same function object


def _per_example_pass(program: PerExampleProgram, state, feed):
  """`step_fn`'s rows of every batch of the feed, with the batch's index and valid
  (what `scoring.assemble` orders by and drops padding with), stacked [batches, B]."""
  def body(_, s):
    batch = program.reader.local_batch(feed, s, jnp.int32(0), train=False)
    rows = dict(program.step_fn(state, batch))
    rows.update(index=batch['index'], valid=batch['valid'])
    return None, rows
  return jax.lax.scan(body, None, jnp.arange(program.num_batches))[1]


@functools.lru_cache(maxsize=64)
def _compiled(program: Any, mesh: jax.sharding.Mesh) -> Callable[..., Any]:
  """The jitted data-parallel program of `program`, one per (value, mesh) in a process."""
  feed = program.reader.feed_specs()
  if isinstance(program, TrainProgram):
    consts = {'epoch': _REPL, 'steps': _REPL, 'stop': _REPL, 'exit_weights': _REPL}
    if program.weighted:
      consts['example_weight'] = _REPL
    return parallel.data_parallel(
        functools.partial(_train_steps, program), mesh,
        in_specs=(_REPL, _REPL, _REPL, feed, consts, _REPL),
        out_specs=(_REPL, _REPL, _REPL, _REPL), donate_argnums=(0, 5))
  if isinstance(program, EvalProgram):
    return parallel.data_parallel(functools.partial(_eval_pass, program), mesh,
                                  in_specs=(_REPL, _REPL, feed), out_specs=_REPL)
  return parallel.data_parallel(functools.partial(_per_example_pass, program), mesh,
                                in_specs=(_REPL, feed), out_specs=_ROWS)


class Programs:
  """The jitted train, eval and scoring programs of one run, and the host side that
  feeds them.

  `weighted`: scale each example's loss by a per-example weight (InfoBatch); `table`: keep
  the per-example table (`example_table`: each example's latest training pass and its
  forgetting events) on device, updated by every train step (`new_table`). Both static: a
  run that needs neither computes no per-example outputs and gathers no weights.
  """

  def __init__(self, pipeline: data_lib.Pipeline, mesh: jax.sharding.Mesh,
               train_config: ml_collections.ConfigDict, *, weighted: bool = False,
               table: bool = False, schedule_epochs: float | None = None):
    self.pipeline, self.mesh, self.train_config = pipeline, mesh, train_config
    # A schedule compressed to `schedule_epochs` (cost_matched) runs the learning-rate
    # curve of `num_epochs` that many times faster.
    self.schedule_scale = train_config.num_epochs / (schedule_epochs or train_config.num_epochs)
    self.weighted, self.table = weighted, table
    self.steps_per_dispatch = min(steps_per_dispatch(train_config),
                                  pipeline.max_steps_per_feed())
    self.train = _compiled(TrainProgram(
        pipeline.reader, ml_collections.FrozenConfigDict(train_config), self.schedule_scale,
        self.steps_per_dispatch, weighted), mesh)

  # --- Host side ------------------------------------------------------------------------

  def new_table(self, num_examples: int, num_outputs: int) -> dict[str, jax.Array]:
    """An empty per-example table (`example_table`) on every device; {} when the run keeps
    none."""
    if not self.table:
      return {}
    return parallel.replicate(self.mesh, example_table.empty(num_examples, num_outputs))

  def evaluate(self, state: steps_lib.TrainState, split: str, num_outputs: int
               ) -> dict[str, np.ndarray]:
    """(sum, count) eval metrics of every exit over `split`, read to the host once."""
    sums = parallel.replicate(self.mesh, {'loss': np.zeros(num_outputs, np.float32),
                                          'correct': np.zeros(num_outputs, np.float32),
                                          'count': np.float32(0)})
    for feed, num_batches in self.pipeline.eval_feeds(split):
      program = _compiled(EvalProgram(self.pipeline.reader, num_batches), self.mesh)
      sums = program(state, sums, feed)
    return jax.device_get(sums)

  def per_example(self, state: Any, split: str, step_fn: PerExampleStep,
                  num_examples: int) -> dict[str, np.ndarray]:
    """One eval-mode pass of `step_fn` over `split`: its rows, plus `index` (and the
    padding dropped), in index order 0..num_examples-1 (`scoring.assemble`).

    `step_fn(state, batch) -> {name: [b, ...]}` is traced on each device's rows of every
    batch (inside `shard_map`: a collective over the mesh names `parallel.BATCH_AXIS`).
    Pass the same function object for every call: it keys the compiled program.
    """
    outputs = []  # stay on device until the pass is done: one transfer per feed
    for feed, num_batches in self.pipeline.eval_feeds(split):
      program = _compiled(PerExampleProgram(self.pipeline.reader, num_batches, step_fn),
                          self.mesh)
      outputs.append(program(state, feed))
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    return scoring.assemble((jax.tree.map(flat, parallel.global_to_host(o)) for o in outputs),
                            num_examples)

  def score(self, state: steps_lib.TrainState, num_examples: int) -> dict[str, np.ndarray]:
    """The scoring pass over the training split (`scoring.score_step`), in index order."""
    return self.per_example(state, 'train', scoring.score_step, num_examples)

  def run_epoch(self, state: steps_lib.TrainState, table: dict[str, jax.Array],
                plan: EpochPlan, observer: EpochObserver = EpochObserver()) -> EpochOutcome:
    """Trains epoch `plan.epoch` of the kept examples from step `plan.first_step` of it.

    `observer.logged` sees the sums of a `log_every_steps` boundary one dispatch late, so
    the device is never idle waiting for the host. `observer.should_stop()` True stops the
    epoch early (preemption) with `preempted=True` (at its last dispatch, the epoch ends as
    usual and the caller's next one stops). `table` (from `new_table`; {}: none) is updated
    on device and returned in the outcome.
    """
    epoch, keep, first_step = plan.epoch, plan.keep, plan.first_step
    full = self.pipeline.steps_per_epoch(keep)  # the epoch's length in the schedule
    steps = full if plan.max_steps is None else min(full, plan.max_steps)  # the steps it runs
    consts = {'epoch': np.int32(epoch), 'steps': np.int32(full), 'stop': np.int32(steps),
              'exit_weights': np.asarray(plan.exit_weights, np.float32)}
    consts = parallel.replicate(self.mesh, consts)
    if self.weighted:
      consts['example_weight'] = plan.example_weight
    cursor = parallel.replicate(self.mesh, np.int32(first_step))
    sums = parallel.replicate(self.mesh, steps_lib.zero_metrics(plan.num_outputs))
    done, log_every = first_step, self.train_config.log_every_steps
    unread = None  # (step in epoch, device sums) of a log boundary not yet read
    for feed in self.pipeline.train_feeds(epoch, keep, first_step, self.steps_per_dispatch):
      if done >= steps:
        break
      n = min(self.steps_per_dispatch, steps - done)
      state, sums, cursor, table = self.train(state, sums, cursor, feed, consts, table)
      if unread is not None:
        observer.logged(unread[0], jax.device_get(unread[1]))
        unread = None
      crossed = (done + n) // log_every > done // log_every
      done += n
      observer.dispatched(n)
      if crossed and done < steps:
        unread = (done, sums)
      # Asked after every dispatch, the last one too: a multi-process agreement counts calls.
      if observer.should_stop() and done < steps:
        host = jax.device_get(sums)
        observer.logged(done, host)
        return EpochOutcome(state, host, done, True, table)
    host = jax.device_get(sums)
    observer.logged(done, host)
    return EpochOutcome(state, host, done, False, table)
