"""The cost-matched baseline: full data for fewer (fractional) epochs at a pruned run's cost."""


import pytest

from eeprune_jax import compare
from eeprune_jax import config_checks
from eeprune_jax import methods
from eeprune_jax import steps
from eeprune_jax import train
from eeprune_jax import workdir as workdir_lib
import tiny_config as tiny_config_lib
from test_compare import demo_config


def test_schedule_epochs_is_the_cost_share_of_num_epochs():
  config = tiny_config_lib.get_config()
  config.prune.method, config.prune.cost_fraction = 'cost_matched', 0.55
  assert methods.get('cost_matched').schedule_epochs(config) == pytest.approx(1.65)
  assert methods.get('eeprune').schedule_epochs(config) == 3.0
  config.prune.cost_fraction = 1.5
  with pytest.raises(config_checks.ConfigError, match=r'config.prune.cost_fraction=1.5'):
    config_checks.validate(config)


def test_a_cost_matched_run_costs_its_target_within_two_percent(tmp_path):
  config = tiny_config_lib.get_config()
  config.data.image_size, config.model.width = 8, 0.25
  config.prune.method, config.prune.cost_fraction = 'cost_matched', 0.55
  summary = train.train_and_evaluate(config, str(tmp_path))
  steps_per_epoch = summary['history'][0]['steps']
  # 1.65 epochs: one whole epoch, then 65% of the next.
  assert [h['steps'] for h in summary['history']] == [steps_per_epoch,
                                                      round(0.65 * steps_per_epoch)]
  assert summary['schedule_epochs'] == pytest.approx(1.65)
  cost = summary['ledger']['cost_vs_full_data']
  assert abs(cost - 0.55) / 0.55 < 0.02
  assert summary['pruning']['num_pruned'] == 0


def test_the_compressed_schedule_ends_at_a_zero_learning_rate():
  config = tiny_config_lib.get_config()
  scale = config.train.num_epochs / 1.65  # what loop.Programs applies
  end = steps.learning_rate(config.train, 1.65 * scale)
  peak = steps.learning_rate(config.train, config.train.warmup_epochs)
  assert end == pytest.approx(0.0, abs=1e-9)
  assert peak == pytest.approx(config.train.learning_rate)


class FakeTrain:
  """Records each run's config and returns a summary with a chosen cost."""

  def __init__(self):
    self.configs = {}

  def __call__(self, config, workdir):
    name = workdir.rsplit('/', 1)[-1]
    self.configs[name] = config
    cost = {'random': 0.6, 'eeprune': 0.63}.get(config.prune.method, 1.0)
    return {'config': workdir_lib.config_to_dict(config), 'test_accuracy': [0.5], 'history': [],
            'ledger': {'cost_vs_full_data': cost, 'full_data_train_macs': 1.0,
                       'examples_trained': 1, 'score_macs': 0.0},
            'pruning': {'pruned_fraction': 0.0, 'rounds': [], 'pruned_fraction_per_class': []}}


def test_compare_runs_the_baseline_last_at_the_measured_cost_of_its_reference(tmp_path):
  config = demo_config(methods='cost_matched,random,eeprune_mid', fractions='0.3,0.5',
                       seeds='0')
  names = [s.name for s in compare.plan_runs(config.compare)]
  assert names[-2:] == ['cost_matched_f0.3_s0', 'cost_matched_f0.5_s0']
  assert compare.cost_reference(config.compare) == 'random'  # the first that prunes
  config.compare.cost_reference = 'eeprune_mid'
  fake = FakeTrain()

  def train_fn(rc, workdir):  # write the summary compare reads the cost from
    summary = fake(rc, workdir)
    paths = workdir_lib.RunDir(workdir)
    paths.root.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_json(paths.summary, summary)
    return summary

  compare.run_comparison(config, str(tmp_path), train_fn=train_fn)
  matched = fake.configs['cost_matched_f0.5_s0']
  assert matched.prune.method == 'cost_matched'
  assert matched.prune.cost_fraction == pytest.approx(0.63)  # eeprune_mid's measured cost


def test_a_baseline_without_a_reference_is_refused():
  config = demo_config(methods='none,cost_matched', fractions='0.3', seeds='0')
  with pytest.raises(ValueError, match='no method that prunes in rounds'):
    compare.cost_reference(config.compare)
