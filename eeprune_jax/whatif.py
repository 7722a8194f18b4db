"""What-if masks: the keep mask a rule would have produced from a run's stored scores.

  python -m eeprune_jax.whatif --workdir=DIR [--source=scores|last_pass] [--epoch=E]
      [--round=R] [--method=eeprune] [--mode=fraction|threshold] [--fraction=0.3]
      [--threshold=0.9] [--exit=0] [--class_balanced=false] [--out=PATH]

Sources: `scores` reads the run's scores.npz (or scores_round{R}.npz with --round), what a
scoring pass saw; `last_pass` reads last_pass/epoch{E:04d}.npz, what each example's latest
training pass saw (no scoring pass), as of the end of epoch E (1-based). A last-pass table
offers each exit's `conf`, `loss` and correctness, so it serves the rules that read those
(eeprune, final_confidence); a scores file serves every rule whose scores it holds.

The rule is the registered method's, applied as one pruning round by `methods.prune`
(the same code a run's round uses), unpruned before: a single-round run's own rule on its
own scores.npz gives back its keep_mask.npy exactly. Flags left out take the run's values.
Prints the mask's size, pruned share per class and its overlap with the run's own
keep_mask.npy, and writes the mask (bool .npy [N]); start a run from it with
`--config.prune.mask_path=PATH`.

`--agreement` instead compares the free scores with a scoring pass: for a run whose round
R scored at the start of epoch p, last_pass/epoch{p:04d}.npz (the training passes of the
epoch just before) against scores_round{R}.npz.
"""

import json
from typing import Any

from absl import app
from absl import flags
from etils import epath
import ml_collections
import numpy as np

from eeprune_jax import masks
from eeprune_jax import methods
from eeprune_jax import workdir as workdir_lib
from eeprune_jax.data import sources

FLAGS = flags.FLAGS
SOURCES = ('scores', 'last_pass')


def run_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config (config.json)."""
  paths = workdir_lib.RunDir(workdir)
  if not paths.config.exists():
    raise FileNotFoundError(f'{paths.config} does not exist: --workdir must be a run directory '
                            '(one `python -m eeprune_jax.main` wrote).')
  return ml_collections.ConfigDict(workdir_lib.read_json(paths.config))


def labels_of(workdir: str) -> np.ndarray:
  """Training labels in canonical order: from a scores file, or else from the data."""
  paths = workdir_lib.RunDir(workdir)
  if paths.scores.exists():
    return workdir_lib.read_npz(paths.scores, ['label'])['label']
  data = run_config(workdir).data
  return sources.load_labels(data, data.train_split)


def last_pass_scores(table: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, np.ndarray]:
  """A last-pass table in a scoring pass's keys (`label`, `pred`, `conf`, `loss`).

  The table stores correctness, not the predicted class: `pred` is the label where the
  exit was correct and -1 where it was not, which is all the correctness rules read.
  Examples never trained on (epoch -1) count as wrong at every exit, confidence 0.
  """
  seen = np.asarray(table['epoch']) >= 0
  correct = np.asarray(table['correct'], bool) & seen[:, None]
  return {'label': labels,
          'pred': np.where(correct, labels[:, None], -1).astype(np.int32),
          'conf': np.where(seen[:, None], np.asarray(table['conf'], np.float32), 0.0),
          'loss': np.asarray(table['loss'], np.float32)}


def load_scores(workdir: str, source: str, epoch: int | None = None,
                round_index: int | None = None) -> dict[str, np.ndarray]:
  """Per-example scores of `source` in canonical index order, with `label`."""
  paths = workdir_lib.RunDir(workdir)
  if source == 'scores':
    path = paths.scores if round_index is None else paths.scores_round(round_index)
    if not path.exists():
      raise FileNotFoundError(f'{path} does not exist: the run has no such pruning round '
                              '(a run without a scoring round has none); use '
                              '--source=last_pass --epoch=E.')
    return workdir_lib.read_npz(path)
  if source == 'last_pass':
    if epoch is None:
      raise ValueError('--source=last_pass needs --epoch=E (1-based: the table as of the '
                       'end of epoch E).')
    path = paths.last_pass(epoch)
    if not path.exists():
      found = sorted(p.name for p in path.parent.glob('epoch*.npz')) if path.parent.exists() else []
      raise FileNotFoundError(f'{path} does not exist; the run has {found or "no last-pass tables"}'
                              ' (train.last_pass_scores=False keeps none).')
    table = workdir_lib.read_npz(path)
    return last_pass_scores(table, labels_of(workdir))
  raise ValueError(f'--source={source!r} is not one of {", ".join(SOURCES)}.')


def whatif_mask(scores: dict[str, np.ndarray], prune_config: ml_collections.ConfigDict,
                seed: int = 0) -> masks.PruneResult:
  """The keep mask of `prune_config`'s rule as one round on `scores` (nothing pruned before)."""
  method = methods.get(prune_config.method)
  if method.needs.epoch_mask or not method.prunes:
    raise ValueError(f'--method={method.name!r} has no pruning round to replay: pick a round '
                     'method, e.g. eeprune or final_confidence.')
  labels = np.asarray(scores['label'])
  target = round(prune_config.fraction * len(labels))
  try:
    return methods.prune(prune_config, scores=scores, labels=labels, prior_keep=None,
                         target_pruned=target, rng=np.random.default_rng(seed))
  except KeyError as e:
    raise ValueError(f'--method={method.name!r} reads score {e} that this source lacks '
                     f'(it has {", ".join(sorted(scores))}).') from None


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
  """|a & b| / |a | b| of two bool sets (1.0 for two empty sets)."""
  union = int((a | b).sum())
  return float((a & b).sum() / union) if union else 1.0


def overlap(keep: np.ndarray, other: np.ndarray) -> dict[str, float]:
  """Jaccard index of the two pruned sets, and the share of examples decided alike."""
  a, b = ~np.asarray(keep, bool), ~np.asarray(other, bool)
  return {'pruned_jaccard': _jaccard(a, b),
          'agreement': float((a == b).mean()),
          'pruned_both': int((a & b).sum()), 'pruned_only_here': int((a & ~b).sum()),
          'pruned_only_run': int((~a & b).sum())}


def report(workdir: str, keep: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
  """The mask's statistics, and its overlap with the run's own keep_mask.npy if any."""
  info: dict[str, Any] = masks.mask_stats(keep, labels, int(labels.max()) + 1)
  path = workdir_lib.RunDir(workdir).keep_mask
  if path.exists():
    with path.open('rb') as f:
      info['vs_run_keep_mask'] = overlap(keep, np.load(f))
  return info


def agreement(workdir: str, round_index: int = 0) -> dict[str, Any]:
  """How well the free last-pass scores agree with round `round_index`'s scoring pass.

  The round scored at the start of epoch p (0-based) = after p epochs, so it is compared
  with last_pass/epoch{p:04d}.npz. Returns the share of examples with the same EEPrune
  eligibility (`prune.exit` and final correct), the Pearson correlation of the early-exit
  confidences (over every example and over the eligible ones of both), and the overlap of
  the top-k pruned sets (EEPrune's priority, k = the round's pruned count).
  """
  config = run_config(workdir)
  rounds = (workdir_lib.read_json(workdir_lib.RunDir(workdir).summary)['pruning']['rounds']
            if workdir_lib.RunDir(workdir).summary.exists() else None)
  scored = load_scores(workdir, 'scores', round_index=round_index)
  epoch = rounds[round_index]['epoch'] if rounds else config.prune.epoch
  free = load_scores(workdir, 'last_pass', epoch=epoch)
  if 'pred' not in scored:
    raise ValueError(f'scores_round{round_index}.npz holds no scoring pass (pred/conf): the '
                     "run's method scored without one.")
  k, labels = config.prune.exit, scored['label']
  el_s = masks.eeprune_eligible(scored['pred'][:, k], scored['pred'][:, -1], labels)
  el_f = masks.eeprune_eligible(free['pred'][:, k], free['pred'][:, -1], labels)
  cs, cf = scored['conf'][:, k], free['conf'][:, k]
  both = el_s & el_f
  num_pruned = int((~scored['keep']).sum())
  top = {}
  for name, el, conf in (('scored', el_s, cs), ('free', el_f, cf)):
    top[name] = ~masks.prune_top(conf, el, min(num_pruned, int(el.sum()))).keep
  return {
      'round': round_index, 'epoch': epoch, 'num_examples': len(labels),
      'eligible_scored': int(el_s.sum()), 'eligible_free': int(el_f.sum()),
      'same_eligibility': float((el_s == el_f).mean()),
      'conf_correlation': float(np.corrcoef(cs, cf)[0, 1]),
      'conf_correlation_eligible_both': (float(np.corrcoef(cs[both], cf[both])[0, 1])
                                         if both.sum() > 2 else None),
      'top_k': num_pruned,
      'top_k_jaccard': _jaccard(top['scored'], top['free']),
      'top_k_shared': int((top['scored'] & top['free']).sum()),
      'run_pruned_in_free_top_k': int((top['free'] & ~scored['keep']).sum()),
  }


def _prune_config(workdir: str) -> tuple[ml_collections.ConfigDict, int]:
  """The run's prune section with the flags given, and the run's seed."""
  config = run_config(workdir)
  p = ml_collections.ConfigDict(config.prune.to_dict())
  for field in ('method', 'mode', 'fraction', 'threshold', 'exit', 'class_balanced'):
    if FLAGS[field].present:
      p[field] = FLAGS[field].value
  return p, config.seed


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  workdir = FLAGS.workdir
  if FLAGS.agreement:
    print(json.dumps(agreement(workdir, FLAGS.round or 0), indent=2))
    return
  p, seed = _prune_config(workdir)
  scores = load_scores(workdir, FLAGS.source, FLAGS.epoch, FLAGS.round)
  result = whatif_mask(scores, p, seed)
  info = report(workdir, result.keep, np.asarray(scores['label']))
  where = (f'last_pass epoch {FLAGS.epoch}' if FLAGS.source == 'last_pass'
           else 'scores' + ('' if FLAGS.round is None else f' round {FLAGS.round}'))
  rule = (f'{p.method} exit {p.exit} ' + (f'threshold {p.threshold}' if p.mode == 'threshold'
                                          else f'fraction {p.fraction}')
          + (' class-balanced' if p.class_balanced else ''))
  print(f"what-if {rule} from {where}: prunes {info['num_pruned']:,} of "
        f"{info['num_examples']:,} ({info['pruned_fraction']:.1%}), shortfall "
        f"{result.shortfall}, cutoff {result.cutoff:.4g}")
  print('  pruned per class: ' + ' '.join(
      f'{c}:{s:.0%}' for c, s in enumerate(info['pruned_fraction_per_class'])))
  if 'vs_run_keep_mask' in info:
    o = info['vs_run_keep_mask']
    print(f"  vs the run's keep_mask.npy: pruned-set Jaccard {o['pruned_jaccard']:.3f}, "
          f"agreement {o['agreement']:.3f} ({o['pruned_both']} pruned by both, "
          f"{o['pruned_only_here']} only here, {o['pruned_only_run']} only by the run)")
  out = FLAGS.out or str(workdir_lib.RunDir(workdir).whatif_mask(p.method))
  epath.Path(out).parent.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_npy(out, result.keep)
  print(f'  wrote {out}')


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing this module is safe)."""
  flags.DEFINE_string('workdir', None, 'The run directory.')
  flags.DEFINE_enum('source', 'scores', SOURCES, 'scores: scores.npz (a scoring pass); '
                    'last_pass: last_pass/epoch{E}.npz (training passes, no scoring).')
  flags.DEFINE_integer('epoch', None, '--source=last_pass: the table as of the end of this '
                       'epoch (1-based).')
  flags.DEFINE_integer('round', None, '--source=scores: scores_round{R}.npz instead of '
                       'scores.npz; --agreement: the round to compare (default 0).')
  flags.DEFINE_string('method', None, 'Rule (a registered round method); default: the run\'s.')
  flags.DEFINE_enum('mode', None, ['fraction', 'threshold'], 'Default: the run\'s.')
  flags.DEFINE_float('fraction', None, 'Share of the training set to prune; default: the run\'s.')
  flags.DEFINE_float('threshold', None, 'Confidence threshold (mode=threshold).')
  flags.DEFINE_integer('exit', None, 'Early exit index; default: the run\'s.')
  flags.DEFINE_bool('class_balanced', None, 'Same share per class; default: the run\'s.')
  flags.DEFINE_string('out', '', 'Where to write the mask (.npy); default '
                      'WORKDIR/whatif/keep_mask_{method}.npy.')
  flags.DEFINE_bool('agreement', False, 'Compare last-pass scores with the scoring pass of '
                    '--round instead of writing a mask.')
  flags.mark_flag_as_required('workdir')


if __name__ == '__main__':
  define_flags()
  app.run(main)
