"""The epoch loop's jitted programs: no host traffic inside an epoch, many steps per
dispatch equal to one, tracked rows of every step, eval and scoring in one pass."""

import jax
import numpy as np
import pytest

from eeprune_jax import data as data_lib
from eeprune_jax import loop
from eeprune_jax import models
from eeprune_jax import parallel
from eeprune_jax import scoring
from eeprune_jax import steps
import feed_batches
import tiny_config as tiny_config_lib


def _setup(steps_per_dispatch=5, track=False, weighted=False, image_size=8, last_pass=False):
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
  programs = loop.Programs(pipeline, mesh, config.train, track=track, weighted=weighted,
                           last_pass=last_pass)
  return config, mesh, pipeline, state, programs


def _epoch(programs, state, keep=None, **kwargs):
  return programs.run_epoch(state, epoch=0, keep=keep, num_outputs=2,
                            exit_weights=np.ones(1, np.float32), **kwargs)


def test_an_epoch_and_an_eval_make_no_implicit_host_device_transfer():
  config, mesh, pipeline, state, programs = _setup(track=True, weighted=True)
  weights = parallel.replicate(mesh, np.ones(pipeline.info.num_train, np.float32))
  rows = []
  _epoch(programs, state, example_weight=weights)  # compiles outside the guard
  state = steps.create_train_state(
      models.build_model(config.model, 10, axis_name=parallel.BATCH_AXIS),
      steps.make_optimizer(config.train), pipeline.info.image_shape, 0, mesh)
  with jax.transfer_guard('disallow'):
    outcome = _epoch(programs, state, example_weight=weights, on_rows=rows.append)
    sums = programs.evaluate(outcome.state, 'eval', 2)
  assert outcome.steps_done == pipeline.steps_per_epoch(None) and not outcome.preempted
  assert float(sums['count']) == pipeline.info.num_eval
  assert len(rows) == -(-outcome.steps_done // programs.steps_per_dispatch)


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


def test_tracked_rows_hold_every_trained_example_once_in_step_order():
  _, _, pipeline, state, programs = _setup(track=True)
  keep = np.ones(pipeline.info.num_train, bool)
  keep[::3] = False
  rows = []
  outcome = _epoch(programs, state, keep=keep, on_rows=rows.append)
  host = [{k: np.asarray(v).reshape(-1) for k, v in parallel.global_to_host(r).items()}
          for r in rows]
  index = np.concatenate([h['index'][h['index'] >= 0] for h in host])
  expected = feed_batches.host(feed_batches.train_batches(pipeline, 0, keep))['index']
  np.testing.assert_array_equal(index, expected)  # the epoch's order, step by step
  assert len(index) == outcome.steps_done * 64 and keep[index].all()


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
  stopped = _epoch(programs, state, should_stop=lambda: True)
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
  calls = []
  outcome = _epoch(programs, state, should_stop=lambda: len(calls) >= 2,
                   on_dispatch=calls.append)
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
  config, mesh, pipeline, state, programs = _setup(steps_per_dispatch, last_pass=True)
  n = pipeline.info.num_train
  keep = np.zeros(n, bool)
  keep[100:100 + 3 * 64] = True  # three steps
  table = programs.new_last_pass(n, 2)
  start = jax.device_get(state)  # the run donates its state; replay from a copy
  outcome = _epoch(programs, state, keep=keep, last_pass=table)
  got = jax.device_get(outcome.last_pass)
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
