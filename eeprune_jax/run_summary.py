"""What a user reads when a run ends: warnings, the headline facts and the closing summary.

* `warn_emptied_classes`: after a pruning round, the classes the keep mask has (nearly)
  emptied, logged as a warning and stored with the round.
* `with_headline`: summary.json's first key, `headline`: test accuracy of every exit, what
  was pruned (target, actual, shortfall, emptied classes), cost against full-data
  training, wall time per phase, warnings, and which files of the workdir to open.
* `closing_lines`: the same facts as the text `train_and_evaluate` prints last.
* `emptied_classes_of`: the emptied classes of any run summary, also of summaries written
  before the headline existed (the comparison report uses it).
* `class_names`: a run's class names, wherever they can be found.
"""

import textwrap
from typing import Any, Sequence

from absl import logging
import ml_collections
import numpy as np

from eeprune_jax import masks
from eeprune_jax import methods
from eeprune_jax import workdir as workdir_lib
from eeprune_jax.data import sources

DEFAULT_CLASS_WARNING_SHARE = 0.9  # config_base's default, for summaries without the field

# The files a finished run leaves (`workdir.RunDir` attributes), in the order worth
# opening them, with what they hold.
FILES = (
    ('summary', 'these facts first, then per-epoch history, per-class pruning, ledger'),
    ('keep_mask', 'bool [N] over the training indices, True = trained on'),
    ('scores', 'per-example scores of the last pruning round (scores_round{{r}}.npz: '
               'every round)'),
    ('last_pass_dir', "every example's latest training pass, after every epoch"),
    ('tensorboard', 'TensorBoard: tensorboard --logdir {workdir}/tensorboard'),
    ('checkpoints', 'Orbax checkpoints: python -m eeprune_jax.inspect --workdir={workdir}'),
)


def _class_name(class_names: Sequence[str], c: int) -> str:
  return str(class_names[c]) if c < len(class_names) else str(c)


def class_names(summary: dict[str, Any], data_config: dict[str, Any],
                num_classes: int) -> tuple[str, ...]:
  """A run's class names: stored in its summary, else from its data set's metadata (no
  prepared data needed for TFDS), else the known names of its data set, else indices."""
  if summary.get('class_names'):
    return tuple(summary['class_names'])
  try:
    names = tuple(sources.class_metadata(ml_collections.ConfigDict(data_config))[2])
    if len(names) == num_classes:
      return names
  except Exception:  # pylint: disable=broad-except  # no data set here: fall back
    pass
  return sources.named_classes(data_config.get('name', ''), None, num_classes)


def emptied_class_rows(keep: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                       threshold: float) -> list[dict[str, Any]]:
  """One JSON-ready row per class of which a share >= threshold is pruned."""
  labels = np.asarray(labels)
  num_classes = max(len(class_names), int(labels.max()) + 1 if labels.size else 0)
  totals = np.bincount(labels, minlength=num_classes)
  pruned = np.bincount(labels[~np.asarray(keep, bool)], minlength=num_classes)
  return [{'class': c, 'name': _class_name(class_names, c), 'pruned': int(pruned[c]),
           'total': int(totals[c]), 'pruned_share': float(pruned[c] / totals[c])}
          for c in masks.emptied_classes(keep, labels, num_classes, threshold)]


def emptied_warning(rows: Sequence[dict[str, Any]], where: str) -> str:
  """The warning text for emptied-class rows; `where` says when, e.g. 'pruning round 0'."""
  parts = []
  for r in rows:
    counts = f', {r["pruned"]} of {r["total"]}' if 'total' in r else ''
    parts.append(f"class {r['class']} '{r['name']}' ({r['pruned_share']:.0%} pruned{counts})")
  return (f'{where} emptied {", ".join(parts)}: the run never trains on these examples '
          'again. At the pruning epoch the network may still predict few classes: prune '
          'later (prune.epoch) or take the same share of every class '
          '(prune.class_balanced=True).')


def warn_emptied_classes(keep: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                         threshold: float, round_info: dict[str, Any]) -> list[dict[str, Any]]:
  """The classes a pruning round's keep mask has emptied; logs the warning if any."""
  rows = emptied_class_rows(keep, labels, class_names, threshold)
  if rows:
    logging.warning('%s', emptied_warning(
        rows, f"Pruning round {round_info['round']} (epoch {round_info['epoch']})"))
  return rows


def emptied_classes_of(summary: dict[str, Any]) -> list[dict[str, Any]]:
  """Emptied-class rows of a run summary (old summaries: from the per-class shares)."""
  if 'headline' in summary:
    return list(summary['headline']['pruning']['emptied_classes'])
  pruning = summary.get('pruning') or {}
  shares = pruning.get('pruned_fraction_per_class') or []
  threshold = ((summary.get('config') or {}).get('prune') or {}).get(
      'class_warning_share', DEFAULT_CLASS_WARNING_SHARE)
  names = summary.get('class_names') or [str(c) for c in range(len(shares))]
  return [{'class': c, 'name': _class_name(names, c), 'pruned_share': float(s)}
          for c, s in enumerate(shares) if s >= threshold]


def _exit_names(summary: dict[str, Any]) -> list[str]:
  return [f'exit{k}' for k in range(len(summary.get('exit_blocks') or []))] + ['final']


def _pruning_facts(summary: dict[str, Any]) -> dict[str, Any]:
  pruning = summary['pruning']
  rounds = pruning.get('rounds') or []
  method, mode = summary['config']['prune']['method'], summary['config']['prune']['mode']
  last = rounds[-1] if rounds else {}
  emptied = last.get('emptied_classes', [])
  known = methods.get(method) if method in methods.names() else None
  scored_by_threshold = mode == 'threshold' and known is not None and known.threshold_mode
  prunes = known is None or known.prunes or known.needs.epoch_mask
  return {
      'method': method,
      'prunes': prunes,
      'rounds': len(rounds),
      'round_epochs': [r['epoch'] for r in rounds],
      # The last round's target is the run's total (targets are cumulative). None: no
      # target (threshold mode prunes what passes the threshold; InfoBatch has no rounds).
      'target_pruned': (0 if not prunes else None if scored_by_threshold or not rounds
                        else last['target_pruned']),
      'num_pruned': pruning['num_pruned'],
      'shortfall': last.get('shortfall', 0),
      'pruned_fraction': pruning['pruned_fraction'],
      'num_examples': pruning['num_examples'],
      'emptied_classes': emptied,
  }


def headline(summary: dict[str, Any], workdir: str) -> dict[str, Any]:
  """The facts of `summary` a user wants first (see the module docstring)."""
  ledger = summary['ledger']
  accuracy = summary.get('test_accuracy') or []
  pruning = _pruning_facts(summary)
  warnings = []
  if pruning['emptied_classes']:
    warnings.append(emptied_warning(pruning['emptied_classes'], 'Pruning'))
  if pruning['shortfall']:
    warnings.append(
        f"Only {pruning['num_pruned']} of the {pruning['target_pruned']} examples to prune "
        'were eligible (shortfall '
        f"{pruning['shortfall']}): the early exit was right and confident on too few.")
  paths = workdir_lib.RunDir(workdir)
  files = {getattr(paths, attr).name: what.format(workdir=workdir) for attr, what in FILES
           if getattr(paths, attr).exists() or attr == 'summary'}
  seconds = dict(ledger.get('seconds', {}))
  seconds['total'] = ledger.get('wall_seconds_total', sum(seconds.values()))
  return {
      'workdir': str(workdir),
      'test_accuracy': dict(zip(_exit_names(summary), accuracy)),
      'exit_blocks': summary.get('exit_blocks'),
      'pruning': pruning,
      'cost_vs_full_data': ledger['cost_vs_full_data'],
      'examples_trained_vs_full_data': ledger['examples_trained_vs_full_data'],
      'wall_seconds': seconds,
      'warnings': warnings,
      'files': files,
  }


def with_headline(summary: dict[str, Any], workdir: str,
                  class_names: Sequence[str]) -> dict[str, Any]:
  """The summary with `headline` first and the data set's `class_names` after it."""
  out = {'headline': None, 'class_names': [str(c) for c in class_names], **summary}
  out['headline'] = headline(out, workdir)
  return out


def _pct(x: float) -> str:
  return f'{100 * x:.2f}%'


def closing_lines(summary: dict[str, Any], workdir: str) -> str:
  """The closing summary of a finished run, as printed at its end."""
  h = summary.get('headline') or headline(summary, workdir)
  blocks = h.get('exit_blocks') or []
  names = [f'{n} (block {blocks[k]})' if k < len(blocks) else n
           for k, n in enumerate(h['test_accuracy'])]
  p = h['pruning']
  lines = ['', '=' * 78, f'Run finished: {h["workdir"]}',
           '  test accuracy   ' + '   '.join(
               f'{n} {_pct(a)}' for n, a in zip(names, h['test_accuracy'].values()))]
  if not p['prunes']:
    lines.append(f"  pruning         none ({p['method']}: full data)")
  elif not p['rounds']:  # InfoBatch: per-epoch drops, no permanent mask
    lines.append(f"  pruning         {p['method']}: examples dropped per epoch, none for good")
  else:
    target = 'threshold mode, no target' if p['target_pruned'] is None else (
        f"target {p['target_pruned']:,}, shortfall {p['shortfall']:,}")
    lines.append(f"  pruned          {p['num_pruned']:,} of {p['num_examples']:,} "
                 f"({p['pruned_fraction']:.1%}) by {p['method']}; {target}; "
                 f"{p['rounds']} round(s) at epoch(s) {', '.join(map(str, p['round_epochs']))}")
  lines.append(f"  cost            {h['cost_vs_full_data']:.3f} x full-data training "
               f"(examples trained on: {h['examples_trained_vs_full_data']:.3f} x)")
  secs = h['wall_seconds']
  lines.append('  wall time       ' + ', '.join(
      f'{k} {v:.1f} s' for k, v in secs.items() if k != 'total') + f" (total {secs['total']:.1f} s)")
  for w in h['warnings']:
    lines.append(textwrap.fill(w, 100, initial_indent='  WARNING: ',
                               subsequent_indent=' ' * 11))
  lines.append('  files:')
  width = max(len(n) for n in h['files'])
  for name, what in h['files'].items():
    lines.append(f'    {name:<{width}}  {what}')
  lines.append('=' * 78)
  return '\n'.join(lines)
