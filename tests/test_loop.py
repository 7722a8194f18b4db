"""The epoch loop's jitted programs: no host traffic inside an epoch, many steps per
dispatch equal to one, the per-example table of every step, eval and scoring in one pass."""

import jax
import numpy as np
import pytest

from eeprune_jax import data as data_lib
from eeprune_jax import example_table
from eeprune_jax import loop
from eeprune_jax import models
from eeprune_jax import parallel
from eeprune_jax import scoring
from eeprune_jax import steps
import feed_batches
from forgetting_reference import ForgettingReference
import tiny_config as tiny_config_lib


def _setup(steps_per_dispatch=5, weighted=False, image_size=8, table=False):
  config = tiny_config_lib.get_config()
  config.data.image_size = image_size
  config.model.width = 0.25
  config.train.log_every_steps = 5
  config.train.steps_per_dispatch = steps_per_dispatch
  mesh = parallel.make_mesh()
  pipeline = data_lib.create_pipeline(config.data, batch_size=64, eval_batch_size=128,
                                      mesh=mesh, seed=0)
  model = models.build_model(config.model, 10, axis_name=parallel.BATCH_AXIS)
  state = steps.create_train_state(model, steps.make_optimizer(config.train),
                                   pipeline.info.image_shape, 0, mesh)
  programs = loop.Programs(pipeline, mesh, config.train, weighted=weighted, table=table)
  return config, mesh, pipeline, state, programs


def _epoch(programs, state, keep=None, table=None, observer=None, **plan):
  plan = loop.EpochPlan(epoch=plan.pop('epoch', 0), keep=keep, num_outputs=2,
                        exit_weights=np.ones(1, np.float32), **plan)
  return programs.run_epoch(state, {} if table is None else table, plan,
                            observer or loop.EpochObserver())


class _StopAfter(loop.EpochObserver):
  """Stops the epoch once `dispatches` dispatches ran; records their steps."""

  def __init__(self, dispatches):
    self.limit, self.calls = dispatches, []

  def dispatched(self, steps):
    self.calls.append(steps)

  def should_stop(self):
    return len(self.calls) >= self.limit


def test_an_epoch_and_an_eval_make_no_implicit_host_device_transfer():
  config, mesh, pipeline, state, programs = _setup(weighted=True, table=True)
  n = pipeline.info.num_train
  weights = parallel.replicate(mesh, np.ones(n, np.float32))
  # compiles outside the guard
  _epoch(programs, state, example_weight=weights, table=programs.new_table(n, 2))
  state = steps.create_train_state(
      models.build_model(config.model, 10, axis_name=parallel.BATCH_AXIS),
      steps.make_optimizer(config.train), pipeline.info.image_shape, 0, mesh)
  table = programs.new_table(n, 2)
  with jax.transfer_guard('disallow'):
    outcome = _epoch(programs, state, example_weight=weights, table=table)
    sums = programs.evaluate(outcome.state, 'eval', 2)
  assert outcome.steps_done == pipeline.steps_per_epoch(None) and not outcome.preempted
  assert float(sums['count']) == pipeline.info.num_eval
  trained = jax.device_get(outcome.table['epoch']) == 0
  assert trained.sum() == outcome.steps_done * 64


def test_the_guard_catches_an_implicit_transfer():
  """The guard the test above relies on does fail on a host value passed to a program."""
  _, mesh, pipeline, state, programs = _setup()
  feed = next(pipeline.train_feeds(0, None, 0, programs.steps_per_dispatch))
  consts = parallel.replicate(mesh, {'epoch': np.int32(0), 'steps': np.int32(3), 'stop': np.int32(3),
                                     'exit_weights': np.ones(1, np.float32)})
  sums = parallel.replicate(mesh, steps.zero_metrics(2))
  with jax.transfer_guard('disallow'), pytest.raises(Exception, match='[Dd]isallowed'):
    programs.train(state, sums, np.int32(0), feed, consts, {})  # a numpy cursor


def test_many_steps_per_dispatch_equal_one_step_per_dispatch():
  """The same steps, looped on device or dispatched one by one, to float tolerance (XLA
  compiles the two programs differently, so rounding differs; it grows with steps)."""
  _, _, pipeline, state1, one = _setup(steps_per_dispatch=1)
  _, _, _, state5, five = _setup(steps_per_dispatch=5)
  assert one.steps_per_dispatch == 1 and five.steps_per_dispatch == 5
  keep = np.zeros(pipeline.info.num_train, bool)
  keep[:5 * 64] = True  # five steps
  a, b = _epoch(one, state1, keep=keep), _epoch(five, state5, keep=keep)
  assert a.steps_done == b.steps_done == 5
  assert float(a.sums['count']) == float(b.sums['count']) == 5 * 64
  np.testing.assert_allclose(a.sums['loss'], b.sums['loss'], rtol=1e-4)
  close = lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
  jax.tree.map(close, jax.device_get(a.state.params), jax.device_get(b.state.params))


def test_a_resumed_epoch_starts_at_its_step_and_runs_the_rest():
  _, _, pipeline, state, programs = _setup()
  steps_in_epoch = pipeline.steps_per_epoch(None)
  outcome = _epoch(programs, state, first_step=10)
  assert outcome.steps_done == steps_in_epoch
  assert float(outcome.sums['count']) == (steps_in_epoch - 10) * 64


def test_an_epoch_stopped_and_resumed_equals_the_whole_epoch_bit_for_bit():
  _, _, pipeline, state, programs = _setup()
  whole = _epoch(programs, state).state
  _, _, _, state, programs = _setup()
  stopped = _epoch(programs, state, observer=_StopAfter(0))
  assert stopped.preempted and stopped.steps_done == programs.steps_per_dispatch
  resumed = _epoch(programs, stopped.state, first_step=stopped.steps_done).state
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(whole.params),
               jax.device_get(resumed.params))


def test_auto_steps_per_dispatch_is_one_on_cpu_and_log_every_steps_elsewhere(monkeypatch):
  config = tiny_config_lib.get_config()
  config.train.log_every_steps, config.train.steps_per_dispatch = 7, 0
  assert loop.steps_per_dispatch(config.train) == 1  # these tests run on the CPU
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert loop.steps_per_dispatch(config.train) == 7
  config.train.steps_per_dispatch = 3
  assert loop.steps_per_dispatch(config.train) == 3


def test_should_stop_ends_the_epoch_at_a_dispatch_boundary():
  _, _, pipeline, state, programs = _setup()
  outcome = _epoch(programs, state, observer=_StopAfter(2))
  assert outcome.preempted and outcome.steps_done == 2 * programs.steps_per_dispatch
  assert float(outcome.sums['count']) == outcome.steps_done * 64


def test_the_scoring_pass_equals_scoring_batch_by_batch():
  _, mesh, pipeline, state, programs = _setup()
  n = pipeline.info.num_train
  fused = programs.score(state, n)
  P = jax.sharding.PartitionSpec
  step = parallel.data_parallel(scoring.score_step, mesh, in_specs=(P(), P('batch')),
                                out_specs=P('batch'))
  rows = []
  for batch in feed_batches.each(feed_batches.eval_batches(pipeline, 'train')):
    rows.append(dict(parallel.global_to_host(step(state, batch)),
                     index=np.asarray(batch['index']), valid=np.asarray(batch['valid'])))
  reference = scoring.assemble(rows, n)
  assert set(fused) == set(reference) == {'index', 'label', 'pred', 'conf', 'el2n', 'loss'}
  np.testing.assert_array_equal(fused['index'], np.arange(n))
  np.testing.assert_array_equal(fused['label'], pipeline.train_labels)
  for k in reference:
    np.testing.assert_allclose(fused[k], reference[k], rtol=1e-5, atol=1e-6)


def test_the_eval_pass_equals_eval_steps_batch_by_batch():
  _, mesh, pipeline, state, programs = _setup()
  P = jax.sharding.PartitionSpec
  step = parallel.data_parallel(steps.eval_step, mesh, in_specs=(P(), P('batch')),
                                out_specs=P())
  batches = [jax.device_get(step(state, b))
             for b in feed_batches.each(feed_batches.eval_batches(pipeline, 'eval'))]
  reference = {k: sum(b[k] for b in batches) for k in batches[0]}
  fused = programs.evaluate(state, 'eval', 2)
  for k in reference:
    np.testing.assert_allclose(fused[k], reference[k], rtol=1e-5)
  assert float(fused['count']) == pipeline.info.num_eval


@pytest.mark.parametrize('steps_per_dispatch', [1, 2])
def test_the_last_pass_table_holds_what_each_examples_train_step_computed(steps_per_dispatch):
  config, mesh, pipeline, state, programs = _setup(steps_per_dispatch, table=True)
  n = pipeline.info.num_train
  keep = np.zeros(n, bool)
  keep[100:100 + 3 * 64] = True  # three steps
  table = programs.new_table(n, 2)
  start = jax.device_get(state)  # the run donates its state; replay from a copy
  outcome = _epoch(programs, state, keep=keep, table=table)
  got = jax.device_get(outcome.table)
  # The same three steps, one jitted train step each, on the same batches and rates.
  P = jax.sharding.PartitionSpec
  step = parallel.data_parallel(steps.train_step, mesh, in_specs=(P(), P('batch'), P()),
                                out_specs=(P(), P(), P('batch')))
  state = parallel.replicate(mesh, start)
  expected = {k: np.zeros_like(v) for k, v in got.items()}
  expected['epoch'][:] = -1
  for i, batch in enumerate(feed_batches.each(feed_batches.train_batches(pipeline, 0, keep))):
    lr = steps.learning_rate(config.train, jax.numpy.float32(0) + jax.numpy.int32(i) / 3)
    hp = parallel.replicate(mesh, {'lr': np.float32(lr), 'exit_weights': np.ones(1, np.float32)})
    state, _, rows = step(state, batch, hp)
    rows = jax.device_get(rows)
    for k in ('conf', 'correct', 'loss'):
      expected[k][rows['index']] = rows[k]
    expected['epoch'][rows['index']] = 0
  np.testing.assert_array_equal(got['epoch'], expected['epoch'])
  assert set(np.flatnonzero(got['epoch'] == 0)) == set(np.flatnonzero(keep))
  np.testing.assert_allclose(got['conf'], expected['conf'], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got['loss'], expected['loss'], rtol=1e-4, atol=1e-5)
  assert (got['correct'] == expected['correct']).mean() > 0.99
  assert np.all(got['conf'][~keep] == 0)  # never trained on: untouched


def test_the_tables_forgetting_counts_equal_a_host_reference_of_the_same_passes():
  """Three epochs (the second skips a third of the data), two steps per dispatch: the
  counts, never-learned and last loss the train program keeps equal the old host tracker
  fed each epoch's passes (an example is trained at most once per epoch, so the table
  after epoch e holds every pass of epoch e: those with `epoch == e`)."""
  _, mesh, pipeline, state, programs = _setup(2, table=True)
  n = pipeline.info.num_train
  table, ref = programs.new_table(n, 2), ForgettingReference(n)
  for epoch in range(3):
    keep = (np.arange(n) % 3 != 0) if epoch == 1 else None
    outcome = _epoch(programs, state, keep=keep, table=table, epoch=epoch)
    state, table = outcome.state, outcome.table
    host = jax.device_get(table)
    index = np.flatnonzero(host['epoch'] == epoch)
    assert len(index) == outcome.steps_done * 64
    ref.update(index, host['correct'][index, -1], host['loss'][index, -1])
  np.testing.assert_array_equal(host['forget_counts'], ref.counts)
  np.testing.assert_array_equal(example_table.never_learned(host), ref.never_learned())
  np.testing.assert_array_equal(example_table.presented(host), ref.presented())
  np.testing.assert_array_equal(example_table.last_loss(host), ref.last_loss)
  assert ref.counts.max() >= 1  # some example was forgotten: the check is not vacuous
