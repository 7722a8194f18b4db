"""The EEPrune keep rule and exact-fraction selection on constructed scores."""

import ml_collections
import numpy as np
import pytest

from eeprune_jax import masks
from eeprune_jax import methods
from eeprune_jax import scoring


def _prune_config(**kw):
  cfg = ml_collections.ConfigDict(dict(method='eeprune', mode='fraction', fraction=0.5,
                                       threshold=0.9, exit=0, epoch=0, every=0,
                                       class_balanced=False))
  cfg.update(kw)
  return cfg


def _scores(early_pred, final_pred, early_conf, labels):
  """Scores with one early exit and the final exit, as the scoring pass lays them out."""
  n = len(labels)
  return {'index': np.arange(n), 'label': np.asarray(labels),
          'pred': np.stack([early_pred, final_pred], 1),
          'conf': np.stack([early_conf, np.full(n, 0.5)], 1)}


def test_threshold_rule_needs_all_three_conditions():
  labels = np.array([0, 0, 0, 0, 1])
  early = np.array([0, 1, 0, 0, 1])  # example 1: early exit wrong
  final = np.array([0, 0, 1, 0, 1])  # example 2: final exit wrong
  conf = np.array([0.95, 0.99, 0.99, 0.80, 0.91])  # example 3: not confident enough
  result = methods.prune(_prune_config(mode='threshold', threshold=0.9),
                         scores=_scores(early, final, conf, labels), labels=labels,
                         prior_keep=None, target_pruned=0, rng=np.random.default_rng(0))
  np.testing.assert_array_equal(result.keep, [False, True, True, True, False])


def test_threshold_is_strict():
  keep = masks.prune_above_threshold(np.ones(2, bool), np.array([0.9, 0.9000001]), 0.9).keep
  np.testing.assert_array_equal(keep, [True, False])


def test_fraction_mode_prunes_exactly_round_f_n_most_confident_first():
  n = 10
  labels = np.zeros(n, int)
  conf = np.linspace(0.1, 1.0, n)
  result = methods.prune(_prune_config(), scores=_scores(labels, labels, conf, labels),
                         labels=labels, prior_keep=None, target_pruned=round(0.35 * n),
                         rng=np.random.default_rng(0))
  assert (~result.keep).sum() == 4 and result.shortfall == 0
  np.testing.assert_array_equal(np.flatnonzero(~result.keep), [6, 7, 8, 9])
  assert result.cutoff == pytest.approx(conf[6])


def test_fraction_mode_reports_shortfall_when_too_few_are_eligible():
  labels = np.zeros(6, int)
  early = np.array([0, 0, 1, 1, 1, 1])  # only two examples are eligible
  result = methods.prune(_prune_config(), scores=_scores(early, labels, np.ones(6), labels),
                         labels=labels, prior_keep=None, target_pruned=3,
                         rng=np.random.default_rng(0))
  np.testing.assert_array_equal(result.keep, [False, False, True, True, True, True])
  assert result.shortfall == 1


def test_ties_go_to_the_lower_index():
  keep = masks.prune_top(np.array([0.5, 0.9, 0.9, 0.9]), np.ones(4, bool), 2).keep
  np.testing.assert_array_equal(keep, [True, False, False, True])


def test_pruned_set_only_grows():
  prior = np.array([True, False, True, True, True])
  priority = np.array([0.1, 0.0, 0.9, 0.8, 0.2])
  result = masks.prune_top(priority, np.ones(5, bool), 3, prior_keep=prior)
  np.testing.assert_array_equal(result.keep, [True, False, False, False, True])
  # Already at the target: nothing more is pruned and nothing is revived.
  again = masks.prune_top(priority, np.ones(5, bool), 2, prior_keep=result.keep)
  np.testing.assert_array_equal(again.keep, result.keep)


def test_chosen_exit_is_used():
  labels = np.zeros(4, int)
  pred = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]])  # exit 0 right on 0-1, exit 1 on 2-3
  scores = {'label': labels, 'pred': pred, 'conf': np.full((4, 3), 0.99)}
  keep = methods.prune(_prune_config(exit=1), scores=scores, labels=labels,
                       prior_keep=None, target_pruned=2, rng=np.random.default_rng(0)).keep
  np.testing.assert_array_equal(keep, [True, True, False, False])


def test_cumulative_targets_reach_round_f_n():
  assert masks.cumulative_targets(1000, 0.4, 1) == [400]
  assert masks.cumulative_targets(1000, 0.4, 4) == [100, 200, 300, 400]


def test_random_methods_are_seeded_and_exact():
  labels = np.repeat(np.arange(4), 25)
  make = lambda method, seed: methods.prune(
      _prune_config(method=method), scores=None, labels=labels, prior_keep=None,
      target_pruned=40, rng=np.random.default_rng(seed)).keep
  np.testing.assert_array_equal(make('random', 1), make('random', 1))
  assert not np.array_equal(make('random', 1), make('random', 2))
  balanced = make('random_balanced', 3)
  assert (~balanced).sum() == 40
  np.testing.assert_array_equal(np.bincount(labels[~balanced], minlength=4), [10] * 4)


def test_mask_length_mismatch_is_an_error():
  with pytest.raises(ValueError, match='one entry per training example'):
    masks.prune_top(np.zeros(3), np.ones(3, bool), 1, prior_keep=np.ones(4, bool))


def test_exit_statistics_on_constructed_logits():
  logits = (np.array([[2.0, 0.0], [0.0, 3.0]]), np.array([[0.0, 1.0], [0.0, 1.0]]))
  out = scoring.exit_statistics(logits, np.array([0, 1]))
  np.testing.assert_array_equal(out['pred'], [[0, 1], [1, 1]])
  p = np.exp(2) / (np.exp(2) + 1)
  np.testing.assert_allclose(out['conf'][0, 0], p, rtol=1e-6)
  np.testing.assert_allclose(out['el2n'][0, 0], np.sqrt(2) * (1 - p), rtol=1e-5)


def test_assemble_orders_rows_and_rejects_gaps():
  chunk = lambda idx, valid: {'index': np.array(idx), 'valid': np.array(valid),
                              'label': np.array(idx) * 10}
  out = scoring.assemble([chunk([2, 0], [1, 1]), chunk([1, 0], [1, 0])], 3)
  np.testing.assert_array_equal(out['index'], [0, 1, 2])
  np.testing.assert_array_equal(out['label'], [0, 10, 20])
  with pytest.raises(RuntimeError, match='1 missing'):
    scoring.assemble([chunk([2, 0], [1, 1])], 3)


def test_class_quotas_are_proportional_and_exact():
  labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
  np.testing.assert_array_equal(masks.class_quotas(10, labels, 3), [5, 3, 2])
  quotas = masks.class_quotas(7, labels, 3)  # 3.5, 2.1, 1.4: the leftover unit goes to class 0
  np.testing.assert_array_equal(quotas, [4, 2, 1])


def test_class_balanced_eeprune_takes_each_class_most_confident_first():
  labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
  conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])  # class 0 is all more confident
  cfg = _prune_config(class_balanced=True)
  keep = methods.prune(cfg, scores=_scores(labels, labels, conf, labels), labels=labels,
                       prior_keep=None, target_pruned=4,
                       rng=np.random.default_rng(0)).keep
  np.testing.assert_array_equal(np.flatnonzero(~keep), [0, 1, 4, 5])
  unbalanced = methods.prune(_prune_config(), scores=_scores(labels, labels, conf, labels),
                             labels=labels, prior_keep=None, target_pruned=4,
                             rng=np.random.default_rng(0)).keep
  np.testing.assert_array_equal(np.flatnonzero(~unbalanced), [0, 1, 2, 3])


def test_emptied_classes_are_those_at_or_above_the_share():
  labels = np.array([0] * 10 + [1] * 10 + [2] * 5 + [4] * 4)  # class 3: no examples
  keep = np.ones(len(labels), bool)
  keep[:10] = False  # class 0: all pruned
  keep[10:19] = False  # class 1: 90%
  keep[20:24] = False  # class 2: 80%
  assert masks.emptied_classes(keep, labels, 5, 0.9) == [0, 1]
  assert masks.emptied_classes(keep, labels, 5, 1.0) == [0]
  assert masks.emptied_classes(keep, labels, 5, 0.8) == [0, 1, 2]
  assert masks.emptied_classes(np.ones(len(labels), bool), labels, 5, 0.1) == []


def test_decision_margin_is_the_distance_to_flipping_the_rule():
  labels = np.array([0, 0, 1, 1])
  scores = {
      'label': labels,
      'pred': np.array([[0, 0], [0, 0], [0, 1], [0, 0]]),  # 2: early wrong; 3: both wrong
      'conf': np.array([[0.9, 0.8], [0.55, 0.9], [0.6, 0.7], [0.7, 0.5]]),
      # exp(-loss) is the label's probability: 0.35 at the early exit of example 2, 0.45
      # and 0.2 at the two exits of example 3.
      'loss': -np.log(np.array([[0.9, 0.8], [0.55, 0.9], [0.35, 0.7], [0.45, 0.2]])),
  }
  margin = masks.eeprune_decision_margin(scores, 0, cutoff=0.6)
  # Eligible: |early conf - cutoff|. Ineligible: the largest gap the label must close.
  np.testing.assert_allclose(margin, [0.3, 0.05, 0.25, 0.3])
