"""The method comparison's report: `report.md` with a results table and four PNG plots.

`write_report(compare_dir, run_summaries, ...)` reads nothing but the run summaries it is
given and, for the image plots, one EEPrune run's `scores.npz` and the training images.
Plots (matplotlib, Agg backend):
  accuracy_vs_examples.png   final-exit test accuracy against examples trained on
  pruned_share_per_class.png pruned share of every class, per method, at one fraction
  exit_confidence_hist.png   early-exit confidence of pruned vs kept examples
  pruned_kept_grid.png       pruned and kept training images of every class
"""

import dataclasses
import json
import os
from typing import Any, Sequence

import matplotlib

matplotlib.use('Agg')
# pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import pyplot as plt
from matplotlib import ticker
import ml_collections
import numpy as np

from eeprune_jax import run_summary
from eeprune_jax.data import sources

ACCURACY_PLOT = 'accuracy_vs_examples.png'
CLASS_PLOT = 'pruned_share_per_class.png'
HIST_PLOT = 'exit_confidence_hist.png'
GRID_PLOT = 'pruned_kept_grid.png'
_MARKERS = 'osD^v<>pXhP*'
_MAX_GRID_CLASSES = 10
_GRID_IMAGES = 8


@dataclasses.dataclass
class RunResult:
  """One run of a comparison: finished (`summary`), failed (`error`) or pending (neither)."""
  name: str
  method: str
  fraction: float
  seed: int
  run_dir: str
  summary: dict[str, Any] | None = None
  error: str | None = None

  @property
  def finished(self) -> bool:
    """Whether the run finished and left a summary."""
    return self.summary is not None and self.error is None


@dataclasses.dataclass
class Row:
  """Mean and std over seeds of one (method, fraction)."""
  method: str
  fraction: float
  seeds: int  # finished
  planned: int
  stats: dict[str, tuple[float, float]]  # metric -> (mean, std); std is nan for one seed


def _metrics(summary: dict[str, Any]) -> dict[str, float]:
  """The table's numbers of one run summary."""
  ledger = summary['ledger']
  full = ledger['full_data_train_macs'] or float('nan')
  return {
      'accuracy': summary['test_accuracy'][-1],
      'pruned_fraction': summary['pruning']['pruned_fraction'],
      'examples_trained': ledger['examples_trained'],
      'score_macs': ledger['score_macs'],
      'score_vs_full': ledger['score_macs'] / full,
      'cost_vs_full_data': ledger['cost_vs_full_data'],
  }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample std (nan for fewer than two values)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float('nan')


def aggregate(results: Sequence[RunResult]) -> list[Row]:
  """One row per (method, fraction) with a finished run, sorted by fraction then accuracy."""
  groups: dict[tuple[str, float], list[RunResult]] = {}
  for r in results:
    groups.setdefault((r.method, r.fraction), []).append(r)
  rows = []
  for (method, fraction), runs in groups.items():
    done = [_metrics(r.summary) for r in runs if r.finished]
    if not done:
      continue
    stats = {k: _mean_std([d[k] for d in done]) for k in done[0]}
    rows.append(Row(method, fraction, len(done), len(runs), stats))
  rows.sort(key=lambda row: (row.fraction, -row.stats['accuracy'][0], row.method))
  return rows


def _pm(mean_std: tuple[float, float], fmt: str, scale: float = 1.0) -> str:
  """`mean ± std` (std only when it exists)."""
  mean, std = mean_std
  text = format(mean * scale, fmt)
  return text if np.isnan(std) else f'{text} ± {format(std * scale, fmt)}'


def _macs(n: float) -> str:
  """MACs with an SI prefix."""
  for unit, size in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('k', 1e3)):
    if abs(n) >= size:
      return f'{n / size:.3g} {unit}MAC'
  return f'{n:.3g} MAC'


def results_table(rows: Sequence[Row]) -> str:
  """The Markdown results table."""
  lines = ['| method | fraction | test accuracy (%) | pruned fraction | examples trained on | '
           'scoring MACs | scoring / full-data training | total cost vs full data | seeds |',
           '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
  for row in rows:
    s = row.stats
    lines.append(
        f'| {row.method} | {row.fraction:g} | {_pm(s["accuracy"], ".2f", 100)} | '
        f'{_pm(s["pruned_fraction"], ".3f")} | {_pm(s["examples_trained"], ",.0f")} | '
        f'{_macs(s["score_macs"][0])} | {_pm(s["score_vs_full"], ".2%")} | '
        f'{_pm(s["cost_vs_full_data"], ".3f")} | {row.seeds}/{row.planned} |')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------
# plots


def _save(fig: Any, path: str, dpi: int) -> None:
  """Saves a figure as PNG atomically and closes it."""
  tmp = f'{path}.tmp-{os.getpid()}'
  fig.savefig(tmp, dpi=dpi, format='png')
  plt.close(fig)
  os.replace(tmp, path)


def _method_styles(methods: Sequence[str]) -> dict[str, tuple[Any, str]]:
  """A colour and a marker per method, stable in the order given."""
  cmap = plt.get_cmap('tab10' if len(methods) <= 10 else 'tab20')
  return {m: (cmap(i % cmap.N), _MARKERS[i % len(_MARKERS)]) for i, m in enumerate(methods)}


def plot_accuracy_vs_examples(path: str, rows: Sequence[Row], methods: Sequence[str]) -> None:
  """Test accuracy (final exit) against examples trained on, error bars over seeds."""
  styles = _method_styles(methods)
  fig, ax = plt.subplots(figsize=(7.5, 5))
  for method in methods:
    mine = sorted((r for r in rows if r.method == method),
                  key=lambda r: r.stats['examples_trained'][0])
    if not mine:
      continue
    x = np.array([r.stats['examples_trained'][0] for r in mine])
    xerr = np.nan_to_num([r.stats['examples_trained'][1] for r in mine])
    y = np.array([r.stats['accuracy'][0] for r in mine]) * 100
    yerr = np.nan_to_num([r.stats['accuracy'][1] for r in mine]) * 100
    colour, marker = styles[method]
    if method == 'none':
      ax.axhline(y[0], color='k', ls=':', lw=1, zorder=1)
      ax.errorbar(x, y, yerr=yerr, xerr=xerr, fmt='*', ms=14, color='k', capsize=3,
                  label='none (full data)', zorder=3)
      continue
    ax.errorbar(x, y, yerr=yerr, xerr=xerr, fmt=marker + ('-' if len(mine) > 1 else ''),
                ms=7, lw=1, color=colour, capsize=3, label=method, zorder=2)
    if len({r.fraction for r in rows}) > 1:  # several fractions: name each point's
      labels: dict[tuple[float, float], list[str]] = {}
      for r, xi, yi in zip(mine, x, y):  # coinciding points (a shortfall) share one label
        labels.setdefault((round(xi, 3), round(yi, 6)), []).append(f'{r.fraction:g}')
      for (xi, yi), names in labels.items():
        ax.annotate('/'.join(names), (xi, yi), textcoords='offset points', xytext=(4, 4),
                    fontsize=7, color=colour)
  ax.xaxis.set_major_formatter(ticker.EngFormatter())
  ax.set_xlabel('examples trained on (all epochs)')
  ax.set_ylabel('test accuracy, final exit (%)')
  ax.set_title('Accuracy against training examples (mean ± std over seeds)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc='best')
  fig.tight_layout()
  _save(fig, path, 120)


def plot_pruned_share_per_class(path: str, results: Sequence[RunResult], fraction: float,
                                methods: Sequence[str], class_names: Sequence[str]
                                ) -> list[str]:
  """Grouped bars: the pruned share of every class, one bar per method (mean over seeds).

  Returns the class labels on the x axis.
  """
  styles = _method_styles(methods)
  shares = {}
  for method in methods:
    runs = [r for r in results if r.finished and r.method == method and r.fraction == fraction]
    if runs and method not in ('none', 'infobatch'):  # InfoBatch keeps a full mask
      shares[method] = np.mean(
          [r.summary['pruning']['pruned_fraction_per_class'] for r in runs], axis=0)
  num_classes = len(next(iter(shares.values())))
  names = list(class_names) if len(class_names) == num_classes else [
      str(c) for c in range(num_classes)]
  width = 0.8 / len(shares)
  fig, ax = plt.subplots(figsize=(max(7.5, 0.75 * num_classes * max(1, len(shares) / 4)), 4.5))
  x = np.arange(num_classes)
  for i, (method, share) in enumerate(shares.items()):
    ax.bar(x - 0.4 + (i + 0.5) * width, share * 100, width, color=styles[method][0],
           label=method)
  ax.axhline(fraction * 100, color='k', ls=':', lw=1, label=f'overall {fraction:g}')
  top = max([fraction] + [float(np.max(s)) for s in shares.values()]) * 100
  ax.set_ylim(0, top * 1.3 + 1)  # room for the legend above the tallest bar
  ax.set_xticks(x)
  ax.set_xticklabels(names, rotation=45 if max(map(len, names)) > 4 else 0,
                     ha='right' if max(map(len, names)) > 4 else 'center')
  ax.set_ylabel('pruned share of the class (%)')
  ax.set_title(f'Pruned share per class at fraction {fraction:g} (mean over seeds)')
  ax.grid(axis='y', alpha=0.3)
  ax.legend(fontsize=8, ncol=min(len(shares) + 1, 4), loc='upper right')
  fig.tight_layout()
  _save(fig, path, 120)
  return names


def plot_exit_confidence(path: str, scores: dict[str, np.ndarray], exit_index: int,
                         cutoff: float | None, title: str) -> None:
  """Histogram of the early exit's confidence, pruned vs kept, with the effective cutoff."""
  conf = scores['conf'][:, exit_index]
  keep = scores['keep'].astype(bool)
  bins = np.linspace(0, 1, 41)
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  ax.hist(conf[keep], bins=bins, alpha=0.6, color='tab:blue', label=f'kept ({keep.sum():,})')
  ax.hist(conf[~keep], bins=bins, alpha=0.6, color='tab:red',
          label=f'pruned ({(~keep).sum():,})')
  if cutoff is not None:
    ax.axvline(cutoff, color='k', ls='--', lw=1.2, label=f'effective threshold {cutoff:.5g}')
  ax.set_yscale('log')
  ax.set_xlabel(f'early-exit confidence (exit {exit_index}, max softmax)')
  ax.set_ylabel('training examples (log scale)')
  ax.set_title(title)
  ax.legend(fontsize=8, loc='upper left')
  fig.tight_layout()
  _save(fig, path, 120)


def plot_pruned_kept_grid(path: str, images: np.ndarray, scores: dict[str, np.ndarray],
                          class_names: Sequence[str], title: str, seed: int = 0) -> None:
  """Per class a row of pruned and a row of kept training images (a random sample of each)."""
  rng = np.random.default_rng(seed)
  index, labels = scores['index'], scores['label']
  keep = scores['keep'].astype(bool)
  classes = np.unique(labels)[:_MAX_GRID_CLASSES]
  rows, cols = 2 * len(classes), _GRID_IMAGES
  width, height = cols * 0.9 + 1.2, rows * 0.9 + 0.5
  fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
  fig.subplots_adjust(left=1.1 / width, right=0.99, bottom=0.05 / height,
                      top=1 - 0.45 / height, wspace=0.08, hspace=0.08)
  grey = images.shape[-1] == 1
  for ci, c in enumerate(classes):
    name = class_names[c] if c < len(class_names) else str(c)
    for ri, (group, label) in enumerate(((~keep, 'pruned'), (keep, 'kept'))):
      members = np.flatnonzero((labels == c) & group)
      pick = rng.permutation(members)[:cols]
      row = axes[2 * ci + ri]
      for j, ax in enumerate(row):
        ax.patch.set_visible(False)  # lets the 'no ... examples' note run across
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
          spine.set_visible(False)
        if j < len(pick):
          img = images[index[pick[j]]]
          ax.imshow(img[..., 0] if grey else img, cmap='gray' if grey else None,
                    interpolation='nearest', vmin=0, vmax=255)
          for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color('tab:red' if label == 'pruned' else 'tab:blue')
            spine.set_linewidth(1.5)
      if not len(pick):
        row[0].text(0.05, 0.5, f'no {label} examples', transform=row[0].transAxes, fontsize=8,
                    va='center', color='0.4')
      row[0].set_ylabel(f'{name}\n{label} ({len(members)})', rotation=0, ha='right',
                        va='center', fontsize=8,
                        color='tab:red' if label == 'pruned' else 'tab:blue')
  fig.suptitle(title, fontsize=10, y=1 - 0.15 / height)
  _save(fig, path, 100)


# ---------------------------------------------------------------------------------------
# data for the plots

_ARRAYS_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _data_config(summary: dict[str, Any]) -> ml_collections.ConfigDict:
  """The data section of a run's config."""
  return ml_collections.ConfigDict(summary['config']['data'])


def _train_images(data_config: ml_collections.ConfigDict) -> np.ndarray:
  """Training images in canonical index order (cached per data config)."""
  key = json.dumps(data_config.to_dict(), sort_keys=True)
  if key not in _ARRAYS_CACHE:
    _ARRAYS_CACHE.clear()  # one data set at a time
    _ARRAYS_CACHE[key] = sources.load_arrays(data_config, 'train')
  return _ARRAYS_CACHE[key][0]


def _class_names(summary: dict[str, Any]) -> tuple[str, ...]:
  """Class names of a run's data set: stored in its summary, else from the data set's
  metadata, else (or where the metadata cannot be read) indices."""
  if summary.get('class_names'):
    return tuple(summary['class_names'])
  n = len(summary['pruning']['pruned_fraction_per_class'])
  try:
    return tuple(sources.dataset_info(_data_config(summary)).class_names)
  except Exception:  # pylint: disable=broad-except
    return sources.named_classes(summary['config']['data'].get('name', ''), None, n)


def _eeprune_run(results: Sequence[RunResult], fraction: float | None) -> RunResult | None:
  """The run the image plots show: eeprune_mid if present, at `fraction` or the largest."""
  runs = [r for r in results if r.finished and r.method.startswith('eeprune')
          and os.path.exists(os.path.join(r.run_dir, 'scores.npz'))]
  if not runs:
    return None
  return min(runs, key=lambda r: (r.method != 'eeprune_mid',
                                  fraction is None or r.fraction != fraction,
                                  -r.fraction, r.seed, r.method))


# ---------------------------------------------------------------------------------------
# report.md


def _budget(config: ml_collections.ConfigDict, results: Sequence[RunResult]) -> list[str]:
  """The shared budget of every run, from the base config."""
  d, m, t, p = config.data, config.model, config.train, config.prune
  data = d.name if d.source == 'tfds' else (d.name or d.npz_path or d.source)
  exits = {}
  for r in results:
    if r.finished:
      exits.setdefault(r.method if r.method.startswith('eeprune') else 'others',
                       r.summary.get('exit_blocks'))
  lines = [
      f'- data: {data} ({d.source}), {d.image_size}x{d.image_size}, augment `{d.augment}`',
      f'- model: {m.name} ({m.stem} stem), width {m.width:g}, exits `{m.exits}` '
      f'({m.exit_head} head), {m.dtype}',
      f'- training: {t.num_epochs} epochs, batch {t.batch_size}, {t.optimizer} lr '
      f'{t.learning_rate:g}, weight decay {t.weight_decay:g}, warm-up {t.warmup_epochs:g} '
      'epoch(s), cosine schedule',
      f'- pruning: after epoch {p.epoch} (mode `{p.mode}`'
      + (f', every {p.every} epochs' if p.every else '') + ')',
  ]
  if exits:
    lines.append('- exit blocks: ' + ', '.join(f'{k} {v}' for k, v in sorted(exits.items())))
  return lines


def _warnings(finished: Sequence[RunResult]) -> list[str]:
  """The report's warnings section: runs whose pruning emptied a class (none: no section)."""
  lines = []
  for r in finished:
    rows = run_summary.emptied_classes_of(r.summary)
    if rows:
      lines.append(f'- **{r.name}**: ' + run_summary.emptied_warning(rows, 'pruning'))
  if not lines:
    return []
  return (['## ⚠ Warnings: classes emptied by pruning', '',
           f'{len(lines)} run(s) pruned all or nearly all of a class (the share is '
           '`prune.class_warning_share`, 90% by default). Their test accuracy mixes the '
           'method with the loss of a class: read their rows with that in mind.', '']
          + lines + [''])


def write_report(compare_dir: str, run_summaries: Sequence[RunResult], *,
                 base_config: ml_collections.ConfigDict, command: str = '',
                 methods: Sequence[str] | None = None,
                 plot_fraction: float | None = None) -> str:
  """Writes `compare_dir/report.md` and the PNG plots; returns the report's path.

  Args:
    compare_dir: the comparison's directory.
    run_summaries: every planned run: finished ones carry a summary, failed ones an
      error, pending ones neither.
    base_config: the run config every method starts from (the budget).
    command: the command line of the comparison.
    methods: the order of methods in the plots (default: the order of the runs).
    plot_fraction: the fraction of the per-class and image plots (default: the largest
      fraction with a finished run).
  """
  results = list(run_summaries)
  methods = list(dict.fromkeys(methods or [r.method for r in results]))
  finished = [r for r in results if r.finished]
  failed = [r for r in results if r.error is not None]
  pending = [r for r in results if r.summary is None and r.error is None]
  rows = aggregate(results)
  pruned_fractions = sorted({r.fraction for r in finished
                             if r.method not in ('none', 'infobatch')})
  fraction = plot_fraction
  if fraction is None or fraction not in pruned_fractions:
    fraction = pruned_fractions[-1] if pruned_fractions else None

  out = ['# Pruning method comparison', '']
  out += [f'{len(finished)} of {len(results)} runs finished'
          + (f', {len(failed)} failed' if failed else '')
          + (f', {len(pending)} not run yet' if pending else '') + '.', '']
  if command:
    out += ['Command:', '', '```bash', command, '```', '']
  out += _warnings(finished)
  out += ['## Budget (shared by every run)', ''] + _budget(base_config, results) + ['']
  out += ['Every method trains the same model on the same schedule and data order; only '
          '`eeprune_*` move the early exit (the exit that scores). `fraction` is the share of '
          'the training set pruned (for InfoBatch, its per-epoch prune ratio).', '']

  out += ['## Results', '']
  if rows:
    out += [results_table(rows), '',
            'Test accuracy is the final exit\'s, after the last epoch. Numbers are mean ± '
            'sample std over the finished seeds (no std for one seed). Examples trained on '
            'counts every epoch; scoring MACs are the forward passes that score the training '
            'set; total cost = (training + scoring MACs) / the MACs of full-data training on '
            'the same schedule.'
            + (' InfoBatch drops examples afresh every epoch and keeps no permanent mask, so '
               'its pruned fraction is 0; its saving shows in examples trained on.'
               if any(r.method == 'infobatch' for r in rows) else ''), '']
  else:
    out += ['No run has finished yet.', '']
  if failed:
    out += ['### Failed runs', '']
    for r in failed:
      out += [f'- `{r.name}` ({r.run_dir}):', '', '  ```', *[
          '  ' + line for line in r.error.strip().splitlines()], '  ```', '']
  if pending:
    out += ['### Not run yet', '', ', '.join(f'`{r.name}`' for r in pending), '']

  out += ['## Plots', '']
  root = compare_dir

  def plot(title: str, filename: str, make, skip_reason: str | None) -> None:
    nonlocal out
    out.append(f'### {title}')
    out.append('')
    target = os.path.join(root, filename)
    if skip_reason is None:
      try:
        caption = make(target)
        out.extend([f'![{title}]({filename})', ''])
        if caption:
          out.extend([caption, ''])
        return
      except Exception as e:  # pylint: disable=broad-except
        plt.close('all')
        skip_reason = f'the plot failed: {type(e).__name__}: {e}'
    if os.path.exists(target):
      os.remove(target)  # a stale plot of earlier runs would mislead
    out.extend([f'Skipped: {skip_reason}.', ''])

  plot('Test accuracy against examples trained on', ACCURACY_PLOT,
       lambda p: plot_accuracy_vs_examples(p, rows, methods),
       None if rows else 'no finished run')

  class_runs = [r for r in finished
                if r.method not in ('none', 'infobatch') and r.fraction == fraction]
  def class_plot(p: str) -> None:
    plot_pruned_share_per_class(p, results, fraction, methods,
                                _class_names(class_runs[0].summary))

  plot('Pruned share per class', CLASS_PLOT, class_plot,
       None if class_runs else 'no finished run that prunes')

  chosen = _eeprune_run(results, fraction)
  skip = None if chosen else 'no finished eeprune_* run with scores.npz'

  def hist(p: str) -> str:
    with np.load(os.path.join(chosen.run_dir, 'scores.npz')) as f:
      scores = dict(f)
    exit_index = int(chosen.summary['config']['prune'].get('exit', 0))
    rounds = chosen.summary['pruning'].get('rounds') or [{}]
    cutoff = rounds[0].get('cutoff')
    plot_exit_confidence(p, scores, exit_index, cutoff,
                         f'{chosen.name}: early-exit confidence at the pruning epoch')
    return (f'From `{chosen.name}` (exit {exit_index}, blocks '
            f'{chosen.summary.get("exit_blocks")}); the line is the effective confidence '
            'threshold of the first pruning round' + (' (none recorded)' if cutoff is None
                                                         else f' ({cutoff:.5g})') + '. '
            'Pruned examples are also correct at both exits; kept ones above the line are '
            'not.')

  plot('Early-exit confidence, pruned vs kept', HIST_PLOT, hist, skip)

  def grid(p: str) -> str:
    with np.load(os.path.join(chosen.run_dir, 'scores.npz')) as f:
      scores = dict(f)
    images = _train_images(_data_config(chosen.summary))
    names = _class_names(chosen.summary)
    plot_pruned_kept_grid(p, images, scores, names,
                          f'{chosen.name}: pruned (red) and kept (blue) training images')
    shown = min(len(np.unique(scores['label'])), _MAX_GRID_CLASSES)
    return (f'From `{chosen.name}`: a random sample of {_GRID_IMAGES} pruned and '
            f'{_GRID_IMAGES} kept training images for {shown} class(es); the counts are the '
            'class\'s pruned and kept examples.')

  plot('Pruned and kept training images', GRID_PLOT, grid, skip)

  out += ['## Runs', '', '| run | status | test accuracy per exit | directory |',
          '| --- | --- | --- | --- |']
  for r in results:
    status = 'finished' if r.finished else 'failed' if r.error is not None else 'not run yet'
    accs = ('/'.join(f'{a:.4f}' for a in r.summary['test_accuracy'])
            if r.finished and r.summary.get('test_accuracy') else '')
    out.append(f'| {r.name} | {status} | {accs} | `{os.path.relpath(r.run_dir, root)}` |')
  out.append('')

  path = os.path.join(root, 'report.md')
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write('\n'.join(out))
  os.replace(tmp, path)  # a reader sees the old report or the new one
  return path
