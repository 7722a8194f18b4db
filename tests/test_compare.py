"""The method comparison command: runs, resumption, failures, report.md and its plots."""

import collections
import json
import os
import pathlib
import runpy
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from eeprune_jax import compare
from eeprune_jax import report
from eeprune_jax.report import markdown
from eeprune_jax.report import plots
from eeprune_jax import train

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = REPO / 'configs' / 'compare_demo.py'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PLOTS = (report.COST_PLOT, report.ACCURACY_PLOT, report.CLASS_PLOT, report.HIST_PLOT, report.GRID_PLOT)


def demo_config(**compare_fields) -> ml_collections.ConfigDict:
  """configs/compare_demo.py shrunk to seconds per run (ResNet-8, 512 8x8 digits, 2 epochs,
  pruning after 1)."""
  config = runpy.run_path(str(DEMO))['get_config']()
  config.data.image_size = 8  # the digits' native size
  config.model.name = 'resnet8'  # compiles in about half ResNet-20's time
  # Whole batches only (4 train, 1 eval): one scoring and one eval program per process,
  # none for a remainder batch.
  config.data.train_split, config.data.eval_split = 'train[:512]', 'test[:256]'
  config.model.width = 0.25
  config.train.num_epochs = 2
  config.prune.epoch = 1
  config.train.batch_size = 128
  config.train.eval_batch_size = 256
  config.train.log_every_steps = 100
  # One checkpoint per run, at its end or when it is stopped (~1 s each on a loaded 2-core
  # machine): these tests read summaries, and a resumed run must resume from the stop's.
  config.train.checkpoint_every_epochs = 100
  config.compare.update(compare_fields)
  return config


# Every function JAX traces in this process, by name, in order (its own timing events).
_TRACED: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, _, **kw: _TRACED.append(kw.get('fun_name'))
    if event == '/jax/core/compile/jaxpr_trace_duration' else None)


class CountingTrain:
  """Wraps train.train_and_evaluate and records the run directories it was called on and
  the functions JAX traced during each run."""

  def __init__(self):
    self.calls: list[str] = []
    self.traced: dict[str, collections.Counter] = {}

  def __call__(self, config: ml_collections.ConfigDict, workdir: str) -> dict:
    name, start = os.path.basename(workdir), len(_TRACED)
    self.calls.append(name)
    try:
      return train.train_and_evaluate(config, workdir)
    finally:
      self.traced[name] = collections.Counter(_TRACED[start:])


# none + random and eeprune_mid at 0.3 train; at 0.99 both fail config validation
# (fewer kept examples than a batch) after the data is loaded: real failures from train.py.
# The frontier trains full data on half the schedule and on all of it.
COMPARE = {'methods': 'none,random,eeprune_mid', 'fractions': '0.3,0.99', 'seeds': '0',
           'frontier': '0.5,1'}
FINISHED = ('none_f0_s0', 'random_f0.3_s0', 'eeprune_mid_f0.3_s0', 'frontier_c0.5_s0',
            'frontier_c1_s0')
FAILED = ('random_f0.99_s0', 'eeprune_mid_f0.99_s0')


@pytest.fixture(scope='module')
def comparison(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('compare')
  counter = CountingTrain()
  results = compare.run_comparison(demo_config(**COMPARE), str(workdir),
                                   command='python -m eeprune_jax.compare --config=demo',
                                   train_fn=counter)
  return workdir, results, counter


def test_report_has_a_row_per_method_and_the_four_plots(comparison):
  workdir, results, counter = comparison
  assert counter.calls == [r.name for r in results]  # every planned run, in order
  assert [r.name for r in results if r.finished] == list(FINISHED)
  text = (workdir / 'report.md').read_text()
  results_section = text.split('## Results')[1].split('## ')[0]
  for row in ('| none | 0 |', '| random | 0.3 |', '| eeprune_mid | 0.3 |'):
    assert sum(line.startswith(row) for line in results_section.splitlines()) == 1, row
  assert 'python -m eeprune_jax.compare --config=demo' in text
  assert 'resnet8' in text and '2 epochs' in text and 'batch 128' in text
  for name in PLOTS:
    data = (workdir / name).read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000, name
    assert f']({name})' in text
  assert 'Skipped' not in text
  stored = json.loads((workdir / 'compare_config.json').read_text())
  assert stored['runs'] == [r.name for r in results]


def test_runs_of_one_schedule_share_the_first_runs_programs(comparison):
  # The runs of a comparison run in one process, one after another: every later run with
  # the first one's schedule and data finds its train, eval and init programs traced.
  # (The frontier's runs have other schedules; eeprune_mid traces its scoring pass.)
  _, _, counter = comparison
  assert {'_train_steps', '_eval_pass', 'init'} <= set(counter.traced['none_f0_s0'])
  for name in ('random_f0.3_s0', 'eeprune_mid_f0.3_s0'):
    assert not {'_train_steps', '_eval_pass', 'init'} & set(counter.traced[name]), (
        name, counter.traced[name])


def test_report_opens_with_every_method_against_the_frontier(comparison):
  workdir, results, _ = comparison
  text = (workdir / 'report.md').read_text()
  first = text.index('## Against training less, at each method')
  assert first < text.index('## Results')
  assert text.index('\n|') > first  # its table is the report's first
  table = text[first:].split('## Results')[0].splitlines()
  by_name = {r.name: r.summary for r in results if r.finished}
  cost = lambda name: by_name[name]['ledger']['cost_vs_full_data']
  acc = lambda name: by_name[name]['test_accuracy'][-1]
  assert cost('frontier_c0.5_s0') == pytest.approx(0.5, abs=0.05)  # a fraction of a step
  assert cost('frontier_c1_s0') == 1.0
  # Full data on the whole schedule is the frontier's end: the same run as `none`.
  assert acc('frontier_c1_s0') == acc('none_f0_s0')
  assert next(line for line in table if line.startswith('| none |')).endswith(
      '| +0.00 | 0 of 1 seeds |')
  c = cost('random_f0.3_s0')
  assert 0.5 < c < 1.0
  w = (c - cost('frontier_c0.5_s0')) / (1.0 - cost('frontier_c0.5_s0'))
  expected = (1 - w) * acc('frontier_c0.5_s0') + w * acc('frontier_c1_s0')
  line = next(line for line in table if line.startswith('| random |'))
  assert f'| {100 * expected:.2f} | {100 * (acc("random_f0.3_s0") - expected):+.2f} |' in line
  # On 2 epochs the scoring pass costs more than pruning saves (measured: 1.04; after one
  # epoch on 512 examples only 23 of the 154 to prune are eligible).
  assert cost('eeprune_mid_f0.3_s0') > 1.0
  line = next(line for line in table if line.startswith('| eeprune_mid |'))
  assert "no reading |  | seed(s) 0 outside the frontier's costs" in line, line
  assert sum(line.startswith('| *training less* |') for line in table) == 2


def test_failed_runs_are_reported_and_the_others_still_run(comparison):
  workdir, results, _ = comparison
  for r in results:
    if r.name in FAILED:
      assert r.error.startswith('ConfigError') and 'prune.fraction=0.99' in r.error
    else:
      assert (workdir / 'runs' / r.name / 'summary.json').exists()
  text = (workdir / 'report.md').read_text()
  failed_section = text.split('### Failed runs')[1].split('## Plots')[0]
  for name in FAILED:
    assert f'`{name}`' in failed_section
  assert 'prune.fraction=0.99' in failed_section


def test_second_invocation_reruns_only_unfinished_runs(comparison):
  workdir, _, _ = comparison
  summaries = {n: workdir / 'runs' / n / 'summary.json' for n in FINISHED}
  mtimes = {n: p.stat().st_mtime_ns for n, p in summaries.items()}
  counter = CountingTrain()
  results = compare.run_comparison(demo_config(**COMPARE), str(workdir), train_fn=counter)
  assert counter.calls == list(FAILED)  # the failed ones are retried (and fail again)
  assert {n: p.stat().st_mtime_ns for n, p in summaries.items()} == mtimes
  assert [r.name for r in results if r.finished] == list(FINISHED)
  results_section = (workdir / 'report.md').read_text().split('## Results')[1]
  assert results_section.split('## ')[0].count('| eeprune_mid | 0.3 |') == 1


def test_finished_run_of_another_config_is_not_reused(comparison, tmp_path):
  workdir, _, _ = comparison
  run = tmp_path / 'runs' / 'none_f0_s0'
  run.mkdir(parents=True)
  summary = json.loads((workdir / 'runs' / 'none_f0_s0' / 'summary.json').read_text())
  summary['config']['train']['num_epochs'] = 5
  (run / 'summary.json').write_text(json.dumps(summary))
  results = compare.run_comparison(demo_config(methods='none', seeds='0'), str(tmp_path),
                                   report_only=True)
  assert 'train.num_epochs' in results[0].error


def test_unknown_method_is_rejected_before_any_run(tmp_path):
  def never(config, workdir):
    raise AssertionError('no run may start')

  with pytest.raises(ValueError, match=r'compare\.methods.*bogus.*valid names: .*none, random'):
    compare.run_comparison(demo_config(methods='none,bogus'), str(tmp_path / 'c'), train_fn=never)
  assert not (tmp_path / 'c').exists()


def test_command_line_rejects_an_unknown_method(tmp_path):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run(
      [sys.executable, '-m', 'eeprune_jax.compare', f'--config={DEMO}',
       f'--workdir={tmp_path / "c"}', '--config.compare.methods=none,eeprune_middle'],
      capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
  assert proc.returncode != 0
  assert 'config.compare.methods' in proc.stderr and 'eeprune_middle' in proc.stderr
  assert 'eeprune_mid' in proc.stderr.split('valid names:')[1]
  assert not (tmp_path / 'c').exists()


def test_run_configs_change_only_the_method_fields():
  config = demo_config(fractions='0.5', frontier='')
  specs = compare.plan_runs(config.compare)
  assert [s.name for s in specs] == [
      'none_f0_s0', 'none_f0_s1', 'random_f0.5_s0', 'random_f0.5_s1',
      'final_confidence_f0.5_s0', 'final_confidence_f0.5_s1', 'eeprune_mid_f0.5_s0',
      'eeprune_mid_f0.5_s1', 'eeprune_mid_balanced_f0.5_s0', 'eeprune_mid_balanced_f0.5_s1']
  config.model.exits = '2,5'
  config.prune.exit = 1
  shallow = compare.run_config(config, compare.RunSpec('eeprune_shallow', 0.5, 1))
  assert (shallow.prune.method, shallow.model.exits, shallow.prune.exit) == (
      'eeprune', 'shallow', 0)
  assert shallow.seed == 1 and shallow.prune.fraction == 0.5 and 'compare' not in shallow
  rand = compare.run_config(config, compare.RunSpec('random', 0.5, 0))
  assert (rand.prune.method, rand.model.exits) == ('random', '2,5')
  with pytest.raises(ValueError, match=r'compare\.fractions'):
    compare.parse_fractions('0.5,1.2')


def test_report_without_finished_runs_skips_the_plots(tmp_path):
  failed = report.RunResult('random_f0.5_s0', 'random', 0.5, 0, str(tmp_path / 'runs' / 'x'),
                            error='ValueError: boom')
  pending = report.RunResult('none_f0_s0', 'none', 0.0, 0, str(tmp_path / 'runs' / 'y'))
  path = report.write_report(str(tmp_path), [failed, pending],
                             base_config=demo_config(), command='cmd')
  text = pathlib.Path(path).read_text()
  assert text.count('Skipped:') == 5 and 'boom' in text and 'No run has finished yet' in text
  assert '`none_f0_s0`' in text.split('### Not run yet')[1]
  assert not any((tmp_path / name).exists() for name in PLOTS)


NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')


def _with_emptied_class(summary, c, headline):
  """A copy of a run summary whose pruning took all of class c, old or new format."""
  out = json.loads(json.dumps(summary))
  out['pruning']['pruned_fraction_per_class'][c] = 1.0
  out['class_names'] = list(NAMES)
  if headline:
    out['headline']['pruning']['emptied_classes'] = [
        {'class': c, 'name': NAMES[c], 'pruned': 150, 'total': 150, 'pruned_share': 1.0}]
  else:
    del out['headline']
  return out


def test_report_warns_of_emptied_classes_and_names_classes(comparison, tmp_path):
  workdir, results, _ = comparison
  done = {r.name: r for r in results if r.finished}
  runs = [done['none_f0_s0'],
          report.RunResult('random_f0.3_s0', 'random', 0.3, 0, done['random_f0.3_s0'].run_dir,
                           summary=_with_emptied_class(done['random_f0.3_s0'].summary, 3, False)),
          report.RunResult('eeprune_mid_f0.3_s0', 'eeprune_mid', 0.3, 0,
                           done['eeprune_mid_f0.3_s0'].run_dir,
                           summary=_with_emptied_class(done['eeprune_mid_f0.3_s0'].summary, 7,
                                                       True))]
  text = pathlib.Path(report.write_report(str(tmp_path), runs,
                                          base_config=demo_config())).read_text()
  assert text.index('## ⚠ Warnings') < text.index('## Results')
  warnings = text.split('## ⚠ Warnings')[1].split('\n## ')[0]
  assert "**random_f0.3_s0**: pruning emptied class 3 'three' (100% pruned)" in warnings
  assert ("**eeprune_mid_f0.3_s0**: pruning emptied class 7 'seven' (100% pruned, 150 of 150)"
          in warnings)
  assert 'none_f0_s0' not in warnings
  # Without emptied classes, no section.
  plain = pathlib.Path(report.write_report(str(tmp_path), runs[:1],
                                           base_config=demo_config())).read_text()
  assert 'Warnings' not in plain
  # The per-class plot labels its bars with the names stored in the summaries.
  labels = plots.plot_pruned_share_per_class(str(tmp_path / 'p.png'), runs, 0.3,
                                             ['random', 'eeprune_mid'],
                                             plots.run_class_names(runs[1].summary))
  assert labels == list(NAMES)


def test_demo_prunes_where_the_network_predicts_every_class(tmp_path, monkeypatch):
  """configs/compare_demo.py as shipped, up to its pruning round (eeprune_mid, seed 0): the
  early exit predicts every class and most examples are eligible, so the confidence
  ranking, not a degenerate eligible set, decides what is pruned."""
  from eeprune_jax import data  # pylint: disable=g-import-not-at-top
  config = compare.run_config(runpy.run_path(str(DEMO))['get_config'](),
                              compare.RunSpec('eeprune_mid', 0.3, 0))
  # Fields that leave the training trajectory unchanged: fewer checkpoints and host syncs.
  config.train.checkpoint_every_epochs, config.train.log_every_steps = 100, 1000
  n = data.dataset_info(config.data).num_train
  stop_at = config.prune.epoch * (n // config.train.batch_size) + 1  # just after the round
  monkeypatch.setattr(train.Preemption, 'should_stop', lambda self, step: step == stop_at)
  assert train.train_and_evaluate(config, str(tmp_path))['preempted']
  scores = dict(np.load(tmp_path / 'scores.npz'))
  labels, pred = scores['label'], scores['pred']
  assert len(np.unique(pred[:, 0])) == 10
  eligible = (pred[:, 0] == labels) & (pred[:, -1] == labels)
  assert eligible.mean() >= 0.5  # measured: 93%
  per_class = np.bincount(labels[eligible], minlength=10) / np.bincount(labels)
  assert per_class.min() >= 0.25, per_class  # measured: 80% or more
  assert (~scores['keep']).sum() == round(config.prune.fraction * n)  # no shortfall


def _finished(method: str, fraction: float, seed: int, accuracy: float, cost: float):
  summary = {'test_accuracy': [accuracy], 'pruning': {'pruned_fraction': 0.0, 'rounds': []},
             'ledger': {'full_data_train_macs': 1.0, 'examples_trained': 1, 'score_macs': 0.0,
                        'cost_vs_full_data': cost}}
  return report.RunResult(f'{method}_f{fraction:g}_s{seed}', method, fraction, seed, '',
                          summary=summary)


def test_against_training_less_pairs_each_seed_with_its_baseline():
  runs = [_finished('cost_matched', 0.5, s, a, 0.8) for s, a in [(0, 0.60), (1, 0.50)]]
  runs += [_finished('random', 0.5, s, a, 0.6) for s, a in [(0, 0.61), (1, 0.48), (2, 0.7)]]
  runs += [_finished('infobatch', 0.5, 2, 0.7, 0.8)]
  table = markdown.cost_matched_table(report.aggregate(runs))
  random_row = next(line for line in table if line.startswith('| random |'))
  # mean 59.67 vs 55.00 (+4.67) within the std of random's seeds (11.0); seed 2 unpaired
  assert '| +4.67 | no | +1.00 -2.00 (above in 1 of 2) |' in random_row, random_row
  assert 'no seed in common' in next(line for line in table if '| infobatch |' in line)
  assert table[-1].startswith('| **cost_matched** | 0.5 | 55.00 ± 7.07 | 0.800 ± 0.000 | 0 |')


def _frontier_run(cost: float, seed: int, accuracy: float, measured: float | None = None):
  run = _finished('cost_matched', 0.0, seed, accuracy, measured or cost)
  run.name, run.frontier_cost = f'frontier_c{cost:g}_s{seed}', cost
  return run


def test_frontier_table_reads_each_seed_at_its_own_cost():
  runs = [_frontier_run(c, s, a + 0.1 * s) for c, a in [(0.4, 0.5), (1.0, 0.8)]
          for s in (0, 1)]
  runs += [_finished('random', 0.5, 0, 0.62, 0.6), _finished('random', 0.5, 1, 0.68, 0.6),
           _finished('random', 0.5, 2, 0.7, 0.6)]  # seed 2: no frontier run
  runs += [_finished('el2n', 0.5, 0, 0.9, 1.3)]  # dearer than the frontier's end
  results = report.aggregate(runs)
  assert sorted(r.method for r in results) == ['el2n', 'random']  # frontier runs: no method
  table = markdown.frontier_table(results, report.frontier_points(runs))
  # seed 0: frontier at 0.6 = 0.6, +2.00; seed 1: 0.7, -2.00
  random_row = next(line for line in table if line.startswith('| random |'))
  assert '| 65.00 ± 7.07 | +0.00 ± 2.83 | 1 of 2 seeds; seed(s) 2 without a frontier run |' \
      in random_row, random_row
  el2n_row = next(line for line in table if line.startswith('| el2n |'))
  assert 'no reading' in el2n_row and "outside the frontier's costs (0.40-1.00)" in el2n_row
  assert table[-2] == '| *training less* | cost 0.4 | 55.00 ± 7.07 | 0.400 | (the frontier) | | 2 seed(s) |'


def test_frontier_runs_follow_the_methods_and_precede_the_cost_matched_ones():
  config = demo_config(methods='cost_matched,none,eeprune_mid', fractions='0.3', seeds='0,1',
                       frontier='1,0.5')
  specs = compare.plan_runs(config.compare)
  assert [s.name for s in specs] == [
      'none_f0_s0', 'none_f0_s1', 'eeprune_mid_f0.3_s0', 'eeprune_mid_f0.3_s1',
      'frontier_c0.5_s0', 'frontier_c0.5_s1', 'frontier_c1_s0', 'frontier_c1_s1',
      'cost_matched_f0.3_s0', 'cost_matched_f0.3_s1']
  assert [s.matched for s in specs].count(True) == 2
  point = compare.run_config(config, specs[4])
  assert (point.prune.method, point.prune.cost_fraction, point.prune.fraction, point.seed) == (
      'cost_matched', 0.5, 0.0, 0)
  with pytest.raises(ValueError, match=r'compare\.frontier'):
    compare.plan_runs(demo_config(frontier='0.5,2').compare)
