"""Dynamic EEPrune: the rule on the last-pass table, exact shares and weights, schedule,
end to end through train_and_evaluate (ledger, resume mid-epoch) and compare's registry."""

import jax
import ml_collections
import numpy as np
import pytest

from eeprune_jax import checkpointing
from eeprune_jax import compare
from eeprune_jax import methods
from eeprune_jax import example_table
from eeprune_jax import train
from eeprune_jax.methods import eeprune_dynamic
import tiny_config as tiny_config_lib


def _table(n=200, seed=0):
  """A synthetic last-pass table: one early exit and the final one."""
  rng = np.random.default_rng(seed)
  table = {'conf': rng.random((n, 2)).astype(np.float32),
           'correct': rng.random((n, 2)) < 0.7,
           'loss': rng.random((n, 2)).astype(np.float32),
           'epoch': np.where(rng.random(n) < 0.1, -1, 1).astype(np.int32)}
  return table


def test_rule_on_the_last_pass_table():
  table = _table()
  got = eeprune_dynamic.eligible(table, 0, 0.5)
  c, conf, seen = table['correct'], table['conf'], table['epoch'] >= 0
  np.testing.assert_array_equal(got, seen & c[:, 0] & c[:, 1] & (conf[:, 0] > 0.5))
  assert 0 < got.sum() < len(got)
  # Never-trained examples (epoch -1) are never eligible, whatever their zeros say.
  table['correct'][:] = True
  table['conf'][:] = 1.0
  assert not eeprune_dynamic.eligible(table, 0, 0.5)[table['epoch'] < 0].any()


@pytest.mark.parametrize('fraction', [0.0, 0.3, 0.5, 0.9])
def test_draw_skips_exactly_a_share_of_the_eligible_and_rescales_the_rest(fraction):
  eligible = eeprune_dynamic.eligible(_table(), 0, 0.3)
  m = int(eligible.sum())
  keep, weight = eeprune_dynamic.draw(eligible, fraction, np.random.default_rng(3))
  assert keep.dtype == bool and weight.dtype == np.float32
  k = round(fraction * m)
  assert (~keep).sum() == k and not (~keep & ~eligible).any()  # only eligible ones skipped
  np.testing.assert_array_equal(weight[~eligible], 1.0)
  if k:
    np.testing.assert_allclose(weight[eligible & keep], m / (m - k), rtol=1e-6)
    assert abs(m / (m - k) - 1 / (1 - fraction)) < 1 / (m - k)  # 1/(1-r) up to rounding


def test_draw_is_unbiased_and_covers_every_eligible_example():
  eligible = np.r_[np.ones(30, bool), np.zeros(10, bool)]
  rng, total, skipped = np.random.default_rng(1), np.zeros(40), np.zeros(40, bool)
  for _ in range(3000):
    keep, weight = eeprune_dynamic.draw(eligible, 0.4, rng)
    total += keep * weight
    skipped |= ~keep
  np.testing.assert_allclose(total / 3000, 1.0, atol=0.05)  # E[keep * weight] = 1
  np.testing.assert_array_equal(skipped, eligible)
  with pytest.raises(ValueError, match='fraction=1.0'):
    eeprune_dynamic.draw(eligible, 1.0, rng)


def test_epoch_mask_schedule_and_seeding():
  config = ml_collections.ConfigDict(dict(
      seed=4, train=dict(num_epochs=8),
      prune=dict(method='eeprune_dynamic', epoch=2, fraction=0.5, threshold=0.3, exit=0,
                 infobatch_anneal=0.25)))
  method = methods.get('eeprune_dynamic')
  assert method.needs == methods.Needs(example_table=True, epoch_mask=True)
  n_eligible = eeprune_dynamic.eligible(_table(), 0, 0.3).sum()
  keep, _ = method.epoch_mask(config, 3, example_table.empty(200, 2))  # none trained: all in
  assert keep.all()
  table = _table()
  masks = {e: method.epoch_mask(config, e, table) for e in range(8)}
  for e, (keep, weight) in masks.items():
    if e < 2 or e >= 6:  # before prune.epoch, and the annealed last quarter
      assert keep.all() and (weight == 1).all()
    else:
      assert (~keep).sum() == round(0.5 * n_eligible)
  assert not np.array_equal(masks[2][0], masks[3][0])  # a fresh draw every epoch
  # Seeded by (seed, epoch): the same epoch redraws the same mask (a resumed run).
  np.testing.assert_array_equal(method.epoch_mask(config, 3, table)[0], masks[3][0])


def test_compare_knows_it():
  assert compare.entries()['eeprune_dynamic'] == compare.Entry('eeprune_dynamic')
  cc = ml_collections.ConfigDict({'methods': 'eeprune_dynamic', 'fractions': '0.5',
                                  'seeds': '0'})
  assert [s.name for s in compare.plan_runs(cc)] == ['eeprune_dynamic_f0.5_s0']


def _config():
  """Pruning from epoch 1, epoch 3 of 4 annealed; a low threshold so examples qualify."""
  config = tiny_config_lib.get_config()
  config.update_from_flattened_dict({
      'train.num_epochs': 4, 'prune.method': 'eeprune_dynamic', 'prune.epoch': 1,
      'prune.fraction': 0.5, 'prune.threshold': 0.2, 'prune.infobatch_anneal': 0.25})
  return config


@pytest.fixture(scope='module')
def dynamic_run(tmp_path_factory):
  """A full run that records every epoch_mask call: (epoch, host table, keep, weight)."""
  workdir = tmp_path_factory.mktemp('dynamic')
  calls = []
  original = eeprune_dynamic.EEPruneDynamic.epoch_mask

  def recording(self, config, epoch, table):
    keep, weight = original(self, config, epoch, table)
    calls.append((epoch, {k: np.array(v) for k, v in table.items()}, keep, weight))
    return keep, weight

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(eeprune_dynamic.EEPruneDynamic, 'epoch_mask', recording)
    summary = train.train_and_evaluate(_config(), str(workdir))
  return workdir, summary, calls


def test_run_skips_only_rule_meeting_examples_and_charges_no_scoring(dynamic_run):
  workdir, summary, calls = dynamic_run
  hist, ledger, n = summary['history'], summary['ledger'], summary['pruning']['num_examples']
  assert [c[0] for c in calls] == [0, 1, 2, 3]
  for epoch, table, keep, weight in calls:
    assert hist[epoch]['kept'] == keep.sum()
    if epoch in (0, 3):  # before prune.epoch, and the annealed last epoch
      assert keep.all() and (weight == 1).all()
      continue
    eligible = eeprune_dynamic.eligible(table, 0, 0.2)
    m = int(eligible.sum())
    assert m > 0 and (~keep).sum() == round(0.5 * m)
    assert not (~keep & ~eligible).any()
    np.testing.assert_allclose(weight[eligible & keep], m / (m - round(0.5 * m)))
    # The skipped examples were not trained on in this epoch: their last pass is older.
    after = np.load(workdir / f'last_pass/epoch{epoch + 1:04d}.npz')
    assert np.all(after['epoch'][~keep] < epoch)
    print(f'epoch {epoch}: eligible {m}/{n} ({m / n:.1%}), skipped {(~keep).sum()} '
          f'({(~keep).sum() / n:.1%} of the data), weight {m / (m - round(0.5 * m)):.3f}')
  assert hist[1]['kept'] < n and hist[2]['steps'] < hist[0]['steps']
  assert ledger['examples_scored'] == 0 and ledger['scoring_passes'] == 0
  assert ledger['score_macs'] == 0 and ledger['seconds']['score'] == 0
  assert ledger['examples_trained'] == sum(h['steps'] for h in hist) * 64
  assert ledger['examples_trained_vs_full_data'] < 1
  assert summary['pruning']['num_pruned'] == 0 and not summary['pruning']['rounds']


def test_preempted_run_resumes_to_the_same_result(dynamic_run, tmp_path, monkeypatch):
  full_dir, full_summary, _ = dynamic_run
  # Mid-way through epoch 2, a pruned epoch (log_every_steps = 5 steps per dispatch).
  stop_at = full_summary['history'][2]['step'] - 3
  monkeypatch.setattr(train.Preemption, 'should_stop', lambda self, step: step >= stop_at)
  first = train.train_and_evaluate(_config(), str(tmp_path))
  assert first['preempted'] and full_summary['history'][1]['step'] < first['step']
  assert first['step'] < full_summary['history'][2]['step']
  monkeypatch.undo()
  resumed = train.train_and_evaluate(_config(), str(tmp_path))
  assert resumed['test_accuracy'] == full_summary['test_accuracy']
  assert [h['kept'] for h in resumed['history']] == [h['kept'] for h in full_summary['history']]
  a = checkpointing.restore_untyped(full_dir)['state']['params']
  b = checkpointing.restore_untyped(tmp_path)['state']['params']
  jax.tree.map(np.testing.assert_array_equal, a, b)
  last = 'last_pass/epoch0004.npz'
  for k, v in np.load(full_dir / last).items():
    np.testing.assert_array_equal(np.load(tmp_path / last)[k], v)
