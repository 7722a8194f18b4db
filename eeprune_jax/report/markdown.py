"""report.md: the budget, the results table, failed and pending runs, plots, every run."""

from typing import Sequence

from etils import epath
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from eeprune_jax import methods
from eeprune_jax import run_summary
from eeprune_jax import workdir as workdir_lib
from eeprune_jax.report import frontier as frontier_lib
from eeprune_jax.report import plots as plots_lib
from eeprune_jax.report.aggregation import Row, RunResult, aggregate, frontier_points


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


def _signed(mean_std: tuple[float, float], scale: float = 100.0) -> str:
  """`+1.25 ± 0.40` (a signed mean; std only when it exists)."""
  mean, std = mean_std
  return f'{mean * scale:+.2f}' + ('' if np.isnan(std) else f' ± {std * scale:.2f}')


def frontier_table(rows: Sequence[Row],
                   points: dict[float, dict[int, tuple[float, float]]]) -> list[str]:
  """Every method against the training-less frontier at its own measured cost, seed by
  seed, then the frontier's own points; [] without a finished frontier run."""
  band = frontier_lib.band(points)
  if not len(band.nominal):
    return []
  curves = frontier_lib.curves(points)
  span = f'{band.cost.min():.2f}-{band.cost.max():.2f}'
  out = ['| method | fraction | test accuracy (%) | total cost vs full data | training less '
         'at that cost (%) | difference (points) | above it in |',
         '| --- | ---: | ---: | ---: | ---: | ---: | --- |']
  for row in rows:
    seeds = sorted(row.accuracy_by_seed)
    reading = frontier_lib.read(
        {s: (row.cost_by_seed[s], row.accuracy_by_seed[s]) for s in seeds}, curves)
    notes = []
    if reading.outside:
      notes.append(f'seed(s) {", ".join(map(str, reading.outside))} outside the frontier\'s '
                   f'costs ({span})')
    if reading.unpaired:
      notes.append(f'seed(s) {", ".join(map(str, reading.unpaired))} without a frontier run')
    if reading.read:
      at, diff = _pm(reading.frontier, '.2f', 100), _signed(reading.difference)
      above = f'{reading.above} of {reading.read} seeds'
    else:
      at, diff, above = 'no reading', '', ''
    above = '; '.join([above] * bool(above) + notes)
    out.append(f'| {row.method} | {row.fraction:g} | {_pm(row.stats["accuracy"], ".2f", 100)} '
               f'| {_pm(row.stats["cost_vs_full_data"], ".3f")} | {at} | {diff} | {above} |')
  for nominal, cost, acc, std, n in zip(band.nominal, band.cost, band.accuracy, band.std,
                                        band.seeds):
    out.append(f'| *training less* | cost {nominal:g} | {_pm((acc, std), ".2f", 100)} | '
               f'{cost:.3f} | (the frontier) | | {n} seed(s) |')
  return out


def _matches_cost(name: str) -> bool:
  return name in methods.names() and methods.get(name).matches_cost


def cost_matched_table(rows: Sequence[Row]) -> list[str]:
  """Every method beside the cost-matched baseline of its fraction (full data, fewer
  epochs, the same cost): the difference in accuracy, whether it exceeds the seed spread,
  and the difference seed by seed (a run against the baseline run of its own seed, which
  shares its initialisation and data order)."""
  baselines = {row.fraction: row for row in rows if _matches_cost(row.method)}
  if not baselines:
    return []
  out = ['| method | fraction | test accuracy (%) | cost vs full data | vs cost-matched '
         '(points) | beyond seed spread? | per seed (points) |',
         '| --- | ---: | ---: | ---: | ---: | --- | --- |']
  for row in rows:
    base = baselines.get(row.fraction)
    if base is None or row is base:
      continue
    (acc, std), (base_acc, base_std) = row.stats['accuracy'], base.stats['accuracy']
    spread = max(std, base_std)
    if np.isnan(spread):
      verdict = 'one seed: no spread'
    else:
      verdict = 'yes' if abs(acc - base_acc) > spread else 'no'
    out.append(f'| {row.method} | {row.fraction:g} | {_pm(row.stats["accuracy"], ".2f", 100)} '
               f'| {_pm(row.stats["cost_vs_full_data"], ".3f")} | {100 * (acc - base_acc):+.2f} '
               f'| {verdict} | {_per_seed(row, base)} |')
  for fraction, base in sorted(baselines.items()):
    out.append(f'| **{base.method}** | {fraction:g} | {_pm(base.stats["accuracy"], ".2f", 100)} '
               f'| {_pm(base.stats["cost_vs_full_data"], ".3f")} | 0 | (the baseline) | |')
  return out


def _per_seed(row: Row, base: Row) -> str:
  """`+3.25 +3.10 +1.99 (above in 3 of 3)`: the row's seeds against the baseline's."""
  seeds = sorted(set(row.accuracy_by_seed) & set(base.accuracy_by_seed))
  if not seeds:
    return 'no seed in common'
  diffs = [100 * (row.accuracy_by_seed[s] - base.accuracy_by_seed[s]) for s in seeds]
  above = sum(d > 0 for d in diffs)
  return f'{" ".join(f"{d:+.2f}" for d in diffs)} (above in {above} of {len(diffs)})'


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


def _budget(config: ml_collections.ConfigDict, results: Sequence[RunResult]) -> list[str]:
  """The shared budget of every run, from the base config."""
  d, m, t, p = config.data, config.model, config.train, config.prune
  data = d.name or d.npz_path or d.source  # a TFDS source always has a name
  exits = {}
  for r in results:
    if r.finished:
      exits.setdefault(r.method if plots_lib.prunes_by_early_exit(r) else 'others',
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


def _relative(path: str, root: epath.Path) -> str:
  """`path` relative to `root` where it lies below it."""
  try:
    return str(epath.Path(path).relative_to(root))
  except ValueError:
    return str(path)


def write_report(compare_dir: epath.PathLike, run_summaries: Sequence[RunResult], *,
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
  rows = aggregate(results)
  points = frontier_points(results)
  paths = workdir_lib.CompareDir(compare_dir)
  out = _header(results, base_config, command)
  out += _tables(results, rows, points)
  out += _Plots(paths, results, rows, methods, frontier_lib.band(points), base_config,
                plot_fraction).section()
  out += _runs_table(results, paths.root)
  # Atomic: a reader sees the old report or the new one.
  workdir_lib.write_bytes(paths.report, '\n'.join(out).encode())
  return str(paths.report)


def _header(results: Sequence[RunResult], base_config: ml_collections.ConfigDict,
            command: str) -> list[str]:
  """Title, run counts, the command, warnings and the shared budget."""
  finished = [r for r in results if r.finished]
  failed = [r for r in results if r.error is not None]
  pending = [r for r in results if r.summary is None and r.error is None]
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
  return out


def _tables(results: Sequence[RunResult], rows: Sequence[Row], points) -> list[str]:
  """Against the frontier, against training less, the results table, failed and pending."""
  out = []
  frontier = frontier_table(rows, points)
  if frontier:
    out += ['## Against training less, at each method\'s own cost', '',
            'The training-less frontier: full data on a schedule compressed to a share of '
            'its epochs (`compare.frontier`; `frontier_c{cost}_s{seed}` runs), for every seed. '
            'Each method is read at its own measured total cost (training + scoring, vs '
            'full-data training) against the frontier, interpolated linearly between the '
            'two nearest frontier points; a cost outside the frontier\'s costs has no '
            'reading (add a frontier point beyond it). Per seed, a run is read against the '
            'frontier of its own seed (same initialisation and data order); the difference '
            'and the frontier\'s accuracy are mean ± sample std over those readings. '
            f'Plot: [{plots_lib.COST_PLOT}]({plots_lib.COST_PLOT}).', ''] + frontier + ['']
  headline = cost_matched_table(rows)
  if headline:
    out += ['## Against training less', '',
            'The alternative a pruned run must beat: full data for fewer epochs at the same '
            'cost (`cost_matched`, its schedule compressed to the cost of the run it is '
            'matched with). A difference counts as beyond the seed spread when it exceeds '
            'the larger sample std over seeds of the two rows. Per seed: each run against '
            'the baseline run of the same seed (same initialisation and data order), in '
            'seed order.', ''] + headline + ['']
  out += ['## Results', '']
  if rows:
    # Finished at a pruning fraction, but without a permanent mask (InfoBatch).
    per_epoch = sorted({r.method for r in results
                        if r.finished and r.fraction > 0 and not r.has_keep_mask})
    out += [results_table(rows), '',
            'Test accuracy is the final exit\'s, after the last epoch. Numbers are mean ± '
            'sample std over the finished seeds (no std for one seed). Examples trained on '
            'counts every epoch; scoring MACs are the forward passes that score the training '
            'set; total cost = (training + scoring MACs) / the MACs of full-data training on '
            'the same schedule.'
            + (f' {", ".join(per_epoch)} drop(s) examples afresh every epoch and keep(s) no '
               'permanent mask, so the pruned fraction is 0; the saving shows in examples '
               'trained on.' if per_epoch else ''), '']
  else:
    out += ['No run has finished yet.', '']
  failed = [r for r in results if r.error is not None]
  if failed:
    out += ['### Failed runs', '']
    for r in failed:
      out += [f'- `{r.name}` ({r.run_dir}):', '', '  ```', *[
          '  ' + line for line in r.error.strip().splitlines()], '  ```', '']
  pending = [r for r in results if r.summary is None and r.error is None]
  if pending:
    out += ['### Not run yet', '', ', '.join(f'`{r.name}`' for r in pending), '']
  return out


class _Plots:
  """The report's plots section: each plot drawn to its PNG, or skipped with the reason."""

  def __init__(self, paths: workdir_lib.CompareDir, results: Sequence[RunResult],
               rows: Sequence[Row], methods: Sequence[str], band,
               base_config: ml_collections.ConfigDict, plot_fraction: float | None):
    self.paths, self.results, self.rows, self.methods, self.band = (
        paths, results, rows, methods, band)
    finished = [r for r in results if r.finished]
    pruned_fractions = sorted({r.fraction for r in finished if r.has_keep_mask})
    fraction = plot_fraction
    if fraction is None or fraction not in pruned_fractions:
      fraction = pruned_fractions[-1] if pruned_fractions else None
    self.fraction = fraction
    self.class_runs = [r for r in finished if r.has_keep_mask and r.fraction == fraction]
    # The run whose early-exit scores the histogram and the image grid show.
    self.chosen = plots_lib.confidence_run(results, fraction, base_config.model.exits)
    self.out: list[str] = []

  def section(self) -> list[str]:
    """The '## Plots' lines, after drawing every plot that has data."""
    self.out = ['## Plots', '']
    no_rows = None if self.rows else 'no finished run'
    self._plot('Test accuracy against total cost', plots_lib.COST_PLOT,
               lambda p: plots_lib.plot_accuracy_vs_cost(p, self.rows, self.methods, self.band),
               None if self.rows or len(self.band.nominal) else 'no finished run')
    self._plot('Test accuracy against examples trained on', plots_lib.ACCURACY_PLOT,
               lambda p: plots_lib.plot_accuracy_vs_examples(p, self.rows, self.methods),
               no_rows)
    self._plot('Pruned share per class', plots_lib.CLASS_PLOT, self._class_plot,
               None if self.class_runs else 'no finished run that prunes')
    skip = (None if self.chosen
            else 'no finished run that prunes by an early exit with scores.npz')
    self._plot('Early-exit confidence, pruned vs kept', plots_lib.HIST_PLOT, self._hist, skip)
    self._plot('Pruned and kept training images', plots_lib.GRID_PLOT, self._grid, skip)
    return self.out

  def _plot(self, title: str, filename: str, make, skip_reason: str | None) -> None:
    """Draws one plot with `make(path)` (which may return a caption), or says why not."""
    self.out += [f'### {title}', '']
    target = self.paths.plot(filename)
    if skip_reason is None:
      try:
        caption = make(target)
        self.out += [f'![{title}]({filename})', '']
        if caption:
          self.out += [caption, '']
        return
      except Exception as e:  # pylint: disable=broad-except
        plt.close('all')
        skip_reason = f'the plot failed: {type(e).__name__}: {e}'
    if target.exists():
      target.unlink()  # a stale plot of earlier runs would mislead
    self.out += [f'Skipped: {skip_reason}.', '']

  def _class_plot(self, p: epath.Path) -> None:  # no caption (the plot returns its labels)
    plots_lib.plot_pruned_share_per_class(
        p, self.results, self.fraction, self.methods,
        plots_lib.run_class_names(self.class_runs[0].summary))

  def _scores(self) -> dict[str, np.ndarray]:
    return workdir_lib.read_npz(workdir_lib.RunDir(self.chosen.run_dir).scores)

  def _hist(self, p: epath.Path) -> str:
    chosen = self.chosen
    exit_index = int(chosen.summary['config']['prune'].get('exit', 0))
    rounds = chosen.summary['pruning'].get('rounds') or [{}]
    cutoff = rounds[0].get('cutoff')
    plots_lib.plot_exit_confidence(p, self._scores(), exit_index, cutoff,
                                   f'{chosen.name}: early-exit confidence at the pruning epoch')
    return (f'From `{chosen.name}` (exit {exit_index}, blocks '
            f'{chosen.summary.get("exit_blocks")}); the line is the effective confidence '
            'threshold of the first pruning round' + (' (none recorded)' if cutoff is None
                                                         else f' ({cutoff:.5g})') + '. '
            'Pruned examples are also correct at both exits; kept ones above the line are '
            'not.')

  def _grid(self, p: epath.Path) -> str:
    chosen, scores = self.chosen, self._scores()
    config = plots_lib.data_config(chosen.summary)
    plots_lib.plot_pruned_kept_grid(
        p, lambda indices: plots_lib.train_images_at(config, indices), scores,
        plots_lib.run_class_names(chosen.summary),
        f'{chosen.name}: pruned (red) and kept (blue) training images')
    shown = min(len(np.unique(scores['label'])), plots_lib.MAX_GRID_CLASSES)
    return (f'From `{chosen.name}`: a random sample of {plots_lib.GRID_IMAGES} pruned and '
            f'{plots_lib.GRID_IMAGES} kept training images for {shown} class(es); the counts '
            'are the class\'s pruned and kept examples.')


def _runs_table(results: Sequence[RunResult], root: epath.Path) -> list[str]:
  """One row per planned run: status, per-exit accuracy, directory."""
  out = ['## Runs', '', '| run | status | test accuracy per exit | directory |',
         '| --- | --- | --- | --- |']
  for r in results:
    status = 'finished' if r.finished else 'failed' if r.error is not None else 'not run yet'
    accs = ('/'.join(f'{a:.4f}' for a in r.summary['test_accuracy'])
            if r.finished and r.summary.get('test_accuracy') else '')
    out.append(f'| {r.name} | {status} | {accs} | `{_relative(r.run_dir, root)}` |')
  out.append('')
  return out
