"""The comparison's numbers: one result per run, mean and std over seeds per method."""

import dataclasses
from typing import Any, Sequence

import numpy as np


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
  frontier_cost: float | None = None  # a run of the training-less frontier at this cost

  @property
  def finished(self) -> bool:
    """Whether the run finished and left a summary."""
    return self.summary is not None and self.error is None

  @property
  def has_keep_mask(self) -> bool:
    """Finished with pruning rounds: a permanent keep mask (not full data or per epoch)."""
    return self.finished and bool(self.summary['pruning']['rounds'])


@dataclasses.dataclass
class Row:
  """Mean and std over seeds of one (method, fraction)."""
  method: str
  fraction: float
  seeds: int  # finished
  planned: int
  stats: dict[str, tuple[float, float]]  # metric -> (mean, std); std is nan for one seed
  accuracy_by_seed: dict[int, float] = dataclasses.field(default_factory=dict)  # finished
  cost_by_seed: dict[int, float] = dataclasses.field(default_factory=dict)  # total, vs full


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
  """One row per (method, fraction) with a finished run, sorted by fraction then accuracy;
  the frontier's runs are not methods and have no row."""
  groups: dict[tuple[str, float], list[RunResult]] = {}
  for r in results:
    if r.frontier_cost is not None:
      continue
    groups.setdefault((r.method, r.fraction), []).append(r)
  rows = []
  for (method, fraction), runs in groups.items():
    finished = [r for r in runs if r.finished]
    if not finished:
      continue
    done = [_metrics(r.summary) for r in finished]
    stats = {k: _mean_std([d[k] for d in done]) for k in done[0]}
    rows.append(Row(method, fraction, len(done), len(runs), stats,
                    {r.seed: d['accuracy'] for r, d in zip(finished, done)},
                    {r.seed: d['cost_vs_full_data'] for r, d in zip(finished, done)}))
  rows.sort(key=lambda row: (row.fraction, -row.stats['accuracy'][0], row.method))
  return rows


def frontier_points(results: Sequence[RunResult]) -> dict[float, dict[int, tuple[float, float]]]:
  """The frontier's finished runs: {nominal cost: {seed: (measured cost, test accuracy)}}."""
  points: dict[float, dict[int, tuple[float, float]]] = {}
  for r in results:
    if r.frontier_cost is None:
      continue
    by_seed = points.setdefault(r.frontier_cost, {})
    if r.finished:
      m = _metrics(r.summary)
      by_seed[r.seed] = (m['cost_vs_full_data'], m['accuracy'])
  return points
