"""What-if masks from a run's scores or last-pass tables; free-score agreement; bad inputs."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from eeprune_jax import train
from eeprune_jax import whatif
from eeprune_jax.methods import eeprune_dynamic
import tiny_config as tiny_config_lib
import xla_env

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """A tiny EEPrune run: round 0 at the start of epoch 1 (after one epoch), 2 epochs."""
  workdir = tmp_path_factory.mktemp('whatif')
  config = tiny_config_lib.get_config()
  config.train.num_epochs, config.prune.epoch = 2, 1
  train.train_and_evaluate(config, str(workdir))
  return workdir


def _prune(**fields):
  p = tiny_config_lib.get_config().prune
  p.update(fields)
  return p


def test_the_runs_own_rule_on_its_scores_reproduces_its_mask(run_dir):
  scores = whatif.load_scores(str(run_dir), 'scores')
  result = whatif.whatif_mask(scores, whatif.run_config(str(run_dir)).prune)
  np.testing.assert_array_equal(result.keep, np.load(run_dir / 'keep_mask.npy'))
  round0 = whatif.load_scores(str(run_dir), 'scores', round_index=0)
  np.testing.assert_array_equal(whatif.whatif_mask(round0, _prune()).keep, result.keep)
  info = whatif.report(str(run_dir), result.keep, scores['label'])
  assert info['vs_run_keep_mask']['pruned_jaccard'] == 1.0
  assert info['vs_run_keep_mask']['agreement'] == 1.0


def test_rules_and_modes_from_either_source(run_dir):
  n = len(np.load(run_dir / 'keep_mask.npy'))
  for source, kwargs in (('scores', {}), ('last_pass', {'epoch': 1})):
    scores = whatif.load_scores(str(run_dir), source, **kwargs)
    labels, pred, conf = scores['label'], scores['pred'], scores['conf']
    for method, exit_ in (('eeprune', 0), ('final_confidence', 1)):
      rule = (pred[:, 0] == labels) & (pred[:, 1] == labels) if method == 'eeprune' else (
          pred[:, 1] == labels)
      r = whatif.whatif_mask(scores, _prune(method=method, mode='threshold', threshold=0.3))
      np.testing.assert_array_equal(~r.keep, rule & (conf[:, exit_] > 0.3))
      r = whatif.whatif_mask(scores, _prune(method=method, fraction=0.1))
      assert (~r.keep).sum() == round(0.1 * n) - r.shortfall and not (~r.keep & ~rule).any()
      r = whatif.whatif_mask(scores, _prune(method=method, fraction=0.1, class_balanced=True))
      assert not (~r.keep & ~rule).any()
      info = whatif.report(str(run_dir), r.keep, labels)
      assert len(info['pruned_fraction_per_class']) == 10


def test_last_pass_scores_follow_the_table(run_dir):
  table = np.load(run_dir / 'last_pass/epoch0001.npz')
  scores = whatif.load_scores(str(run_dir), 'last_pass', epoch=1)
  labels = scores['label']
  np.testing.assert_array_equal(scores['pred'] == labels[:, None], table['correct'])
  # EEPrune's eligibility read from the table is dynamic EEPrune's rule, one place each.
  table32 = {k: table[k] for k in ('conf', 'correct', 'epoch')}
  np.testing.assert_array_equal(
      ~whatif.whatif_mask(scores, _prune(mode='threshold', threshold=0.2)).keep,
      eeprune_dynamic.eligible(table32, 0, 0.2))


def test_agreement_of_free_scores_with_the_scoring_pass(run_dir):
  a = whatif.agreement(str(run_dir))
  assert a['epoch'] == 1 and a['top_k'] == (~np.load(run_dir / 'keep_mask.npy')).sum()
  assert 0 <= a['same_eligibility'] <= 1 and -1 <= a['conf_correlation'] <= 1
  assert 0 <= a['top_k_jaccard'] <= 1


def test_bad_inputs_are_named(run_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match='must be a run directory'):
    whatif.run_config(str(tmp_path))
  with pytest.raises(ValueError, match='needs --epoch'):
    whatif.load_scores(str(run_dir), 'last_pass')
  with pytest.raises(FileNotFoundError, match=r'epoch0009.npz does not exist.*epoch0001.npz'):
    whatif.load_scores(str(run_dir), 'last_pass', epoch=9)
  with pytest.raises(FileNotFoundError, match='scores_round3.npz does not exist'):
    whatif.load_scores(str(run_dir), 'scores', round_index=3)
  with pytest.raises(ValueError, match="--source='bogus'"):
    whatif.load_scores(str(run_dir), 'bogus')
  scores = whatif.load_scores(str(run_dir), 'last_pass', epoch=1)
  with pytest.raises(ValueError, match="'infobatch' has no pruning round"):
    whatif.whatif_mask(scores, _prune(method='infobatch'))
  with pytest.raises(ValueError, match="'el2n' reads score 'el2n_runs' that this source lacks"):
    whatif.whatif_mask(scores, _prune(method='el2n'))


def test_the_command_writes_the_mask(run_dir, tmp_path):
  out = tmp_path / 'mask.npy'
  env = xla_env.env(1)
  proc = subprocess.run(
      [sys.executable, '-m', 'eeprune_jax.whatif', f'--workdir={run_dir}', '--source=last_pass',
       '--epoch=1', '--method=final_confidence', '--fraction=0.2', f'--out={out}'],
      env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  mask = np.load(out)
  # After one epoch fewer than 20% are correct at the final exit: all of them go.
  assert mask.dtype == bool and 0 < (~mask).sum() <= round(0.2 * len(mask))
  assert f'prunes {(~mask).sum():,} of 1,437' in proc.stdout
  assert 'final_confidence exit 0 fraction 0.2 from last_pass epoch 1' in proc.stdout
  assert "vs the run's keep_mask.npy: pruned-set Jaccard" in proc.stdout
