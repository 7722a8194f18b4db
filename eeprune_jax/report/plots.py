"""The comparison's plots (matplotlib, Agg backend), and the run data they show.

  accuracy_vs_cost.png       final-exit test accuracy against total cost, with the frontier
  accuracy_vs_examples.png   final-exit test accuracy against examples trained on
  pruned_share_per_class.png pruned share of every class, per method, at one fraction
  exit_confidence_hist.png   early-exit confidence of pruned vs kept examples
  pruned_kept_grid.png       pruned and kept training images of every class
"""

import io
from typing import Any, Callable, Sequence

from etils import epath
import matplotlib

matplotlib.use('Agg')
# pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import pyplot as plt
from matplotlib import ticker
import ml_collections
import numpy as np

from eeprune_jax import methods as methods_lib
from eeprune_jax import run_summary
from eeprune_jax import workdir as workdir_lib
from eeprune_jax.data import sources
from eeprune_jax.report import frontier as frontier_lib
from eeprune_jax.report.aggregation import Row, RunResult

COST_PLOT = 'accuracy_vs_cost.png'
ACCURACY_PLOT = 'accuracy_vs_examples.png'
CLASS_PLOT = 'pruned_share_per_class.png'
HIST_PLOT = 'exit_confidence_hist.png'
GRID_PLOT = 'pruned_kept_grid.png'
_MARKERS = 'osD^v<>pXhP*'
MAX_GRID_CLASSES = 10
GRID_IMAGES = 8


def _save(fig: Any, path: epath.PathLike, dpi: int) -> None:
  """Saves a figure as PNG atomically (local or gs://) and closes it."""
  buf = io.BytesIO()
  fig.savefig(buf, dpi=dpi, format='png')
  plt.close(fig)
  workdir_lib.write_bytes(path, buf.getvalue())


def _method_styles(methods: Sequence[str]) -> dict[str, tuple[Any, str]]:
  """A colour and a marker per method, stable in the order given."""
  cmap = plt.get_cmap('tab10' if len(methods) <= 10 else 'tab20')
  return {m: (cmap(i % cmap.N), _MARKERS[i % len(_MARKERS)]) for i, m in enumerate(methods)}


def plot_accuracy_vs_examples(path: epath.PathLike, rows: Sequence[Row],
                              methods: Sequence[str]) -> None:
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
    if all(r.fraction == 0 for r in mine):  # a full-data baseline: the reference line
      ax.axhline(y[0], color='k', ls=':', lw=1, zorder=1)
      ax.errorbar(x, y, yerr=yerr, xerr=xerr, fmt='*', ms=14, color='k', capsize=3,
                  label=f'{method} (full data)', zorder=3)
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


def plot_accuracy_vs_cost(path: epath.PathLike, rows: Sequence[Row], methods: Sequence[str],
                          band: frontier_lib.Band) -> None:
  """Test accuracy (final exit) against total cost (training + scoring, vs full data): the
  training-less frontier as a line with its seed band, each method a point with error bars."""
  styles = _method_styles(methods)
  fig, ax = plt.subplots(figsize=(7.5, 5))
  if len(band.nominal):
    acc, std = band.accuracy * 100, np.nan_to_num(band.std) * 100
    ax.fill_between(band.cost, acc - std, acc + std, color='0.8', zorder=0,
                    label='training less: ± std over seeds')
    ax.plot(band.cost, acc, 'k-', marker='.', lw=1.5, zorder=1,
            label='training less (full data, shorter schedule)')
  several = len({r.fraction for r in rows if r.fraction > 0}) > 1
  for method in methods:
    for r in (r for r in rows if r.method == method):
      colour, marker = styles[method]
      label = method + (f' {r.fraction:g}' if several and r.fraction > 0 else '')
      ax.errorbar(r.stats['cost_vs_full_data'][0], r.stats['accuracy'][0] * 100,
                  xerr=np.nan_to_num(r.stats['cost_vs_full_data'][1]),
                  yerr=np.nan_to_num(r.stats['accuracy'][1]) * 100,
                  fmt='*' if r.fraction == 0 else marker, ms=12 if r.fraction == 0 else 8,
                  color='k' if r.fraction == 0 else colour, capsize=3, label=label, zorder=3)
  ax.set_xlabel('total cost: (training + scoring MACs) / full-data training')
  ax.set_ylabel('test accuracy, final exit (%)')
  ax.set_title('Accuracy against cost (mean ± std over seeds)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc='lower right')
  fig.tight_layout()
  _save(fig, path, 120)


def plot_pruned_share_per_class(path: epath.PathLike, results: Sequence[RunResult],
                                fraction: float, methods: Sequence[str],
                                class_names: Sequence[str]) -> list[str]:
  """Grouped bars: the pruned share of every class, one bar per method (mean over seeds);
  returns the class labels on the x axis."""
  styles = _method_styles(methods)
  shares = {}
  for method in methods:
    runs = [r for r in results if r.has_keep_mask and r.method == method
            and r.fraction == fraction]
    if runs:
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


def plot_exit_confidence(path: epath.PathLike, scores: dict[str, np.ndarray],
                         exit_index: int, cutoff: float | None, title: str) -> None:
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


def plot_pruned_kept_grid(path: epath.PathLike, load_images: Callable[[list[int]], np.ndarray],
                          scores: dict[str, np.ndarray], class_names: Sequence[str], title: str,
                          seed: int = 0) -> None:
  """Per class a row of pruned and a row of kept training images (a random sample of each).

  `load_images(indices)`: the training images of those canonical indices, uint8 [K,H,W,C];
  called once, with the images drawn only.
  """
  rng = np.random.default_rng(seed)
  index, labels = scores['index'], scores['label']
  keep = scores['keep'].astype(bool)
  classes = np.unique(labels)[:MAX_GRID_CLASSES]
  picks = {}  # (class, group) -> rows of `scores` drawn
  for c in classes:
    for group, mask in (('pruned', ~keep), ('kept', keep)):
      members = np.flatnonzero((labels == c) & mask)
      picks[c, group] = (members, rng.permutation(members)[:GRID_IMAGES])
  drawn = sorted({int(index[r]) for _, pick in picks.values() for r in pick})
  loaded = load_images(drawn)
  images = dict(zip(drawn, loaded))
  rows, cols = 2 * len(classes), GRID_IMAGES
  width, height = cols * 0.9 + 1.2, rows * 0.9 + 0.5
  fig = plt.figure(figsize=(width, height))
  # One image of every cell, drawn in one Axes: an Axes per cell (160 for 10 classes) took
  # ~2.7 s to draw, and report.md is rewritten after every run of a comparison.
  ax = fig.add_axes((1.1 / width, 0.05 / height, 0.99 - 1.1 / width, 1 - 0.5 / height))
  ax.set_axis_off()
  grid = [(c, label, *picks[c, label]) for c in classes for label in ('pruned', 'kept')]
  color = lambda label: 'tab:red' if label == 'pruned' else 'tab:blue'
  mosaic, step = _mosaic([[images[int(index[r])] for r in pick] for *_, pick in grid],
                         [color(label) for _, label, *_ in grid], cols)
  ax.imshow(mosaic, interpolation='nearest')
  for ri, (c, label, members, pick) in enumerate(grid):
    name = class_names[c] if c < len(class_names) else str(c)
    y = (ri + 0.5) * step
    ax.text(-0.2 * step, y, f'{name}\n{label} ({len(members)})', ha='right', va='center',
            fontsize=8, color=color(label), clip_on=False)
    if not len(pick):
      ax.text(0.05 * step, y, f'no {label} examples', fontsize=8, va='center', color='0.4')
  fig.suptitle(title, fontsize=10, y=1 - 0.15 / height)
  _save(fig, path, 100)


def _mosaic(rows: list[list[np.ndarray]], colors: list[str], cols: int
            ) -> tuple[np.ndarray, int]:
  """The images of every row (uint8 [H,W,C], C 1 or 3) on a white RGB canvas, each
  enlarged to about 80 pixels with a border of its row's colour; and the cell pitch."""
  shapes = [image.shape for row in rows for image in row]
  h, w = (shapes[0][0], shapes[0][1]) if shapes else (8, 8)
  scale = max(1, round(80 / max(h, w)))
  border, gap = 2, 8
  cell_h, cell_w = h * scale + 2 * border, w * scale + 2 * border
  step = max(cell_h, cell_w) + gap
  canvas = np.ones((len(rows) * step, cols * step, 3), np.float32)
  for ri, (row, color) in enumerate(zip(rows, colors)):
    rgb = np.asarray(matplotlib.colors.to_rgb(color), np.float32)
    for j, image in enumerate(row[:cols]):
      big = np.repeat(np.repeat(image.astype(np.float32) / 255.0, scale, 0), scale, 1)
      y, x = ri * step, j * step
      canvas[y:y + cell_h, x:x + cell_w] = rgb
      canvas[y + border:y + cell_h - border, x + border:x + cell_w - border] = big
  return canvas, step


# ---------------------------------------------------------------------------------------
# data for the plots

def data_config(summary: dict[str, Any]) -> ml_collections.ConfigDict:
  """The data section of a run's config."""
  return ml_collections.ConfigDict(summary['config']['data'])


def train_images_at(config: ml_collections.ConfigDict, indices: list[int]) -> np.ndarray:
  """The training images of canonical `indices` of data config `config` (those only)."""
  return sources.load_images(config, 'train', indices)


def run_class_names(summary: dict[str, Any]) -> tuple[str, ...]:
  """Class names of a finished run's data set (`run_summary.class_names`)."""
  return run_summary.class_names(summary, summary['config']['data'],
                                 len(summary['pruning']['pruned_fraction_per_class']))


def prunes_by_early_exit(r: RunResult) -> bool:
  """Whether a finished run's method prunes by an early exit's confidence (EEPrune)."""
  name = r.summary['config']['prune']['method']
  return name in methods_lib.names() and methods_lib.get(name).early_exit


def confidence_run(results: Sequence[RunResult], fraction: float | None,
                   model_exits: str) -> RunResult | None:
  """The run the confidence and image plots show.

  A finished run that prunes by an early exit and left scores.npz; preferably one on the
  budget's own exits (`model_exits`), at `fraction` or else the largest one.
  """
  runs = [r for r in results if r.finished and prunes_by_early_exit(r)
          and workdir_lib.RunDir(r.run_dir).scores.exists()]
  if not runs:
    return None
  return min(runs, key=lambda r: (r.summary['config']['model']['exits'] != model_exits,
                                  fraction is None or r.fraction != fraction,
                                  -r.fraction, r.seed, r.method))
