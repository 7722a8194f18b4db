"""The training-less frontier: full data on compressed schedules, as a yardstick.

`compare.frontier` trains on every example for a share c of the schedule (the
`cost_matched` method at `prune.cost_fraction=c`) for several c and every seed. Per seed,
the frontier is the piecewise-linear curve through its runs' (measured total cost, test
accuracy). A method's run is read against the frontier of its own seed at the run's own
measured cost (training + scoring, vs full data): linear interpolation between the two
nearest frontier points. Outside the frontier's costs there is no reading (nan): a curve
says nothing past its ends, so a run cheaper than the cheapest point or dearer than the
dearest is counted as `outside`, and the remedy is a frontier point beyond it.

Pure numpy; the report's table and plot are built on it.
"""

import dataclasses
from typing import Mapping, Sequence

import numpy as np

# seed -> (costs, accuracies) of that seed's frontier runs
Curves = Mapping[int, tuple[Sequence[float], Sequence[float]]]
# Measured costs of the same nominal point differ by a fraction of one step; within this
# of an end a run still reads the end's accuracy.
TOLERANCE = 1e-6


def interpolate(costs: Sequence[float], accuracies: Sequence[float], at: float) -> float:
  """The frontier's accuracy at cost `at`: linear between the two nearest points; nan
  outside [min(costs), max(costs)] or with no point."""
  costs, accuracies = np.asarray(costs, np.float64), np.asarray(accuracies, np.float64)
  if not len(costs) or np.isnan(at):
    return float('nan')
  order = np.argsort(costs, kind='stable')
  costs, accuracies = costs[order], accuracies[order]
  if at < costs[0] - TOLERANCE or at > costs[-1] + TOLERANCE:
    return float('nan')
  return float(np.interp(np.clip(at, costs[0], costs[-1]), costs, accuracies))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample std (nan std for one value; nan both for none)."""
  values = np.asarray(values, np.float64)
  if not len(values):
    return float('nan'), float('nan')
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float('nan')


@dataclasses.dataclass(frozen=True)
class Reading:
  """A method's runs against the frontier, seed by seed."""
  frontier: tuple[float, float]  # the frontier's accuracy at each run's cost: mean, std
  difference: tuple[float, float]  # run minus frontier, per seed: mean, std
  differences: dict[int, float]  # seed -> run minus frontier (read seeds only)
  above: int  # seeds in which the run beat its frontier
  read: int  # seeds with a reading
  outside: list[int]  # seeds whose run cost fell outside their frontier's costs
  unpaired: list[int]  # seeds without a frontier run


def read(runs: Mapping[int, tuple[float, float]], curves: Curves) -> Reading:
  """Reads runs {seed: (cost, accuracy)} against the frontier of the same seed."""
  at, diffs, outside, unpaired = [], {}, [], []
  for seed, (cost, accuracy) in sorted(runs.items()):
    if seed not in curves:
      unpaired.append(seed)
      continue
    value = interpolate(*curves[seed], cost)
    if np.isnan(value):
      outside.append(seed)
      continue
    at.append(value)
    diffs[seed] = accuracy - value
  return Reading(_mean_std(at), _mean_std(list(diffs.values())), diffs,
                 sum(d > 0 for d in diffs.values()), len(diffs), outside, unpaired)


@dataclasses.dataclass(frozen=True)
class Band:
  """The frontier over seeds, per nominal point: mean cost, mean and std of accuracy."""
  nominal: np.ndarray  # compare.frontier's costs, ascending
  cost: np.ndarray
  accuracy: np.ndarray
  std: np.ndarray  # nan where one seed
  seeds: np.ndarray  # finished seeds per point


def band(points: Mapping[float, Mapping[int, tuple[float, float]]]) -> Band:
  """The line and seed band of the plot from {nominal cost: {seed: (cost, accuracy)}}."""
  nominal = sorted(c for c, by_seed in points.items() if by_seed)
  cost, acc, std, seeds = [], [], [], []
  for c in nominal:
    values = list(points[c].values())
    cost.append(float(np.mean([v[0] for v in values])))
    mean, sd = _mean_std([v[1] for v in values])
    acc.append(mean)
    std.append(sd)
    seeds.append(len(values))
  return Band(*(np.asarray(v, np.float64) for v in (nominal, cost, acc, std)),
              np.asarray(seeds, np.int64))


def curves(points: Mapping[float, Mapping[int, tuple[float, float]]]) -> dict[int, tuple[
    list[float], list[float]]]:
  """Per seed, the (costs, accuracies) of its finished frontier runs."""
  out: dict[int, tuple[list[float], list[float]]] = {}
  for _, by_seed in sorted(points.items()):
    for seed, (cost, accuracy) in by_seed.items():
      out.setdefault(seed, ([], []))
      out[seed][0].append(cost)
      out[seed][1].append(accuracy)
  return out


def parse(text: str) -> list[float]:
  """`compare.frontier`: comma-separated costs in (0, 1], ascending; '' = no frontier."""
  items = [t.strip() for t in str(text or '').split(',') if t.strip()]
  try:
    costs = sorted(set(float(t) for t in items))
  except ValueError as e:
    raise ValueError(f'config.compare.frontier={text!r} is not a comma-separated list of '
                     f'numbers: {e}') from None
  bad = [c for c in costs if not 0.0 < c <= 1.0]
  if bad:
    raise ValueError(f'config.compare.frontier={text!r}: every cost must be in (0, 1] (a '
                     'share of the full-data schedule), e.g. 0.4,0.6,0.8,1.0; '
                     "'' for no frontier.")
  if len(costs) == 1:
    raise ValueError(f'config.compare.frontier={text!r} names one cost: a frontier needs '
                     'two or more to interpolate between, e.g. 0.4,0.6,0.8,1.0.')
  return costs
