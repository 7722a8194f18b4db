"""Compares pruning methods on one budget.

  python -m eeprune_jax.compare --config=configs/compare_demo.py --workdir=DIR \
      --config.compare.methods=none,random,eeprune_mid --config.compare.seeds=0,1

The config is a normal run config plus a `compare` section (see configs/compare_demo.py):
`compare.methods`, `compare.fractions` and `compare.seeds` are comma-separated lists, and
every (method, fraction, seed) is one run of `train.train_and_evaluate` in
`DIR/runs/{method}_f{fraction}_s{seed}`. A method name is a registered `prune.method` or
one of the named variants a method declares (`eeprune_mid`: EEPrune with the exit moved
to the middle; see `entries`). With `compare.parallel=1` (the default) runs are
sequential and in-process; with N > 1, N runs go at once, each its own process with
`compare.memory_fraction` of device memory (0: 0.9 / N) (see `run_pool`). A run whose
`summary.json` exists is not repeated; an unfinished one resumes from its workdir; a run
that raises is reported as failed and the comparison goes on. `DIR/report.md` and its
plots are rewritten after every run, so a partial comparison is readable.

With `compare.frontier` (e.g. `0.4,0.6,0.8,1.0`) every seed also trains on full data for
each of those shares of the schedule (`cost_matched`'s compressed schedule, runs
`frontier_c{cost}_s{seed}`): the training-less frontier. report.md opens with every method
read against it at the method's own measured cost (see `report/frontier.py`).
"""

import dataclasses
import functools
import shlex
import sys
from typing import Any, Callable, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from eeprune_jax import methods
from eeprune_jax import report
from eeprune_jax import run_pool
from eeprune_jax import train
from eeprune_jax import workdir as workdir_lib
from eeprune_jax.report import frontier as frontier_lib


@dataclasses.dataclass(frozen=True)
class Entry:
  """A method of the comparison: a registered `prune.method` and its config overrides.

  Every run sets `prune.class_balanced=False` (the paper's rule) unless its overrides say
  otherwise.
  """
  method: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # 'section.field'


def entries() -> dict[str, Entry]:
  """Every name `compare.methods` accepts: each registered method, then its variants."""
  out = {}
  for name in methods.names():
    out[name] = Entry(name)
    for variant, overrides in methods.get(name).variants.items():
      out[variant] = Entry(name, overrides)
  return out


def method_of(name: str) -> methods.Method:
  """The registered method behind a `compare.methods` name (a method or a variant of one)."""
  return methods.get(entries()[name].method)


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of the comparison; with `cost`, a point of the training-less frontier."""
  method: str
  fraction: float
  seed: int
  cost: float | None = None  # frontier runs: the share of the full-data schedule

  @property
  def name(self) -> str:
    """The run's directory name, e.g. `eeprune_mid_f0.5_s0` or `frontier_c0.6_s0`."""
    if self.cost is not None:
      return f'frontier_c{self.cost:g}_s{self.seed}'
    return f'{self.method}_f{self.fraction:g}_s{self.seed}'

  @property
  def matched(self) -> bool:
    """A cost-matched baseline: its cost is the measured cost of another run."""
    return self.cost is None and method_of(self.method).matches_cost


def frontier_method() -> str:
  """The method frontier runs use: the registered one that trains less at a given cost."""
  return next(n for n in methods.names() if methods.get(n).matches_cost)


def _split(text: str) -> list[str]:
  """Comma-separated items, stripped, empty ones dropped."""
  return [item.strip() for item in str(text).split(',') if item.strip()]


def parse_methods(text: str) -> list[str]:
  """Method names of `compare.methods`, in order, without duplicates; rejects unknown ones."""
  names, known = list(dict.fromkeys(_split(text))), entries()
  unknown = [m for m in names if m not in known]
  if unknown or not names:
    raise ValueError(
        f'config.compare.methods={text!r}: unknown method(s) '
        f'{", ".join(unknown) or "(none given)"}; valid names: {", ".join(known)}.')
  return names


def parse_fractions(text: str) -> list[float]:
  """Fractions of `compare.fractions`, each in (0, 1)."""
  try:
    fractions = list(dict.fromkeys(float(f) for f in _split(text)))
  except ValueError as e:
    raise ValueError(f'config.compare.fractions={text!r} is not a comma-separated list of '
                     f'numbers: {e}') from None
  bad = [f for f in fractions if not 0.0 < f < 1.0]
  if bad or not fractions:
    raise ValueError(f'config.compare.fractions={text!r}: every fraction must be in (0, 1), '
                     'e.g. 0.3,0.5.')
  return fractions


def parse_seeds(text: str) -> list[int]:
  """Seeds of `compare.seeds`."""
  try:
    seeds = list(dict.fromkeys(int(s) for s in _split(text)))
  except ValueError as e:
    raise ValueError(f'config.compare.seeds={text!r} is not a comma-separated list of '
                     f'integers: {e}') from None
  if not seeds:
    raise ValueError(f'config.compare.seeds={text!r} names no seed, e.g. 0 or 0,1,2.')
  return seeds


def parse_parallel(compare_config: ml_collections.ConfigDict) -> tuple[int, float, float]:
  """`compare.parallel` (runs at once, >= 1), `compare.memory_fraction` (each run's share
  of device memory, in [0, 1]; 0 = 0.9 / parallel) and `compare.progress_every_s`."""
  parallel = compare_config.get('parallel', 1)
  fraction = compare_config.get('memory_fraction', 0.0)
  progress_every_s = compare_config.get('progress_every_s', 30.0)
  if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
    raise ValueError(f'config.compare.parallel={parallel!r}: the number of runs at once must '
                     'be an integer >= 1 (1 = one run after another, in this process).')
  if not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
    raise ValueError(f'config.compare.memory_fraction={fraction!r} must be in [0, 1]: each '
                     "run's share of device memory, 0 = 0.9 / compare.parallel.")
  if parallel > 1 and fraction * parallel > 1.0:
    raise ValueError(f'config.compare.memory_fraction={fraction} x compare.parallel='
                     f'{parallel} is more than the whole device; lower one of them, or set '
                     'memory_fraction=0 for 0.9 / parallel each.')
  if not isinstance(progress_every_s, (int, float)) or progress_every_s <= 0:
    raise ValueError(f'config.compare.progress_every_s={progress_every_s!r} must be > 0: '
                     'seconds between status lines of concurrent runs.')
  return parallel, float(fraction), float(progress_every_s)


def plan_runs(compare_config: ml_collections.ConfigDict) -> list[RunSpec]:
  """Every run of the comparison, method-major; one that never prunes once per seed at 0.

  The frontier's runs (`compare.frontier`, every cost and seed) follow the methods.
  Cost-matched baselines run once per fraction and seed, after every other run, since
  their length is the measured cost of the run they are matched with.
  """
  names = parse_methods(compare_config.methods)
  parse_parallel(compare_config)
  fractions = parse_fractions(compare_config.fractions)
  seeds = parse_seeds(compare_config.seeds)
  frontier = frontier_lib.parse(compare_config.get('frontier', ''))
  runs = []
  names.sort(key=lambda name: method_of(name).matches_cost)  # stable
  for name in names:
    method = method_of(name)
    if method.matches_cost:
      for cost in frontier:
        runs.extend(RunSpec(frontier_method(), 0.0, seed, cost) for seed in seeds)
      frontier = []
    for fraction in (fractions if method.prunes or method.matches_cost else [0.0]):
      runs.extend(RunSpec(name, fraction, seed) for seed in seeds)
  for cost in frontier:
    runs.extend(RunSpec(frontier_method(), 0.0, seed, cost) for seed in seeds)
  return runs


def cost_reference(compare_config: ml_collections.ConfigDict) -> str:
  """The method whose runs the cost-matched baseline matches: `compare.cost_reference`,
  or the first method of `compare.methods` that prunes in rounds."""
  named = str(compare_config.get('cost_reference', '') or '')
  if named:
    if named not in parse_methods(compare_config.methods):
      raise ValueError(f'config.compare.cost_reference={named!r} is not one of '
                       f'config.compare.methods={compare_config.methods!r}.')
    return named
  for name in parse_methods(compare_config.methods):
    method = method_of(name)
    if method.prunes and not method.needs.epoch_mask:
      return name
  raise ValueError('config.compare.methods has a cost-matched baseline but no method that '
                   'prunes in rounds to match; add one (e.g. eeprune_mid) or set '
                   'config.compare.cost_reference.')


def matched_cost(paths: workdir_lib.CompareDir, reference: str, spec: RunSpec) -> float:
  """The measured cost (training plus scoring, vs full data) of the reference run."""
  ref = RunSpec(reference, spec.fraction, spec.seed)
  path = paths.run(ref.name).summary
  if not path.exists():
    raise ValueError(f'{spec.name} matches the cost of {ref.name}, which has not finished '
                     f'({path} is missing).')
  return float(workdir_lib.read_json(path)['ledger']['cost_vs_full_data'])


def base_run_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The compare config without its `compare` section (an unlocked copy)."""
  base = ml_collections.ConfigDict(config.to_dict())
  if 'compare' in base:
    del base['compare']
  return base


def run_config(config: ml_collections.ConfigDict, spec: RunSpec,
               cost_fraction: float | None = None) -> ml_collections.ConfigDict:
  """The run config of one (method, fraction, seed): the base config with those set
  (and, for a cost-matched baseline, the cost it matches; a frontier run, its own)."""
  rc = base_run_config(config)
  entry = entries()[spec.method]
  rc.seed = spec.seed
  rc.prune.fraction = float(spec.fraction)
  fields = {'prune.method': entry.method, 'prune.class_balanced': False, **entry.overrides}
  if spec.cost is not None:
    cost_fraction = spec.cost
  if cost_fraction is not None:
    fields['prune.cost_fraction'] = float(cost_fraction)
  for field, value in fields.items():
    section, name = field.split('.')
    rc[section][name] = value
  return rc


TrainFn = Callable[[ml_collections.ConfigDict, str], dict[str, Any]]


def run_comparison(config: ml_collections.ConfigDict, workdir: str, *, command: str = '',
                   train_fn: TrainFn | None = None,
                   report_only: bool = False) -> list[report.RunResult]:
  """Runs (or resumes) every run of the comparison in `workdir`; returns their results.

  Args:
    config: a run config with a `compare` section.
    workdir: the comparison's directory (runs in `workdir/runs/`).
    command: the command line, stated in report.md.
    train_fn: replaces `train.train_and_evaluate` in sequential runs (tests).
    report_only: write the report from the runs found, start none.

  Raises:
    ValueError: a bad `compare` field, before any run starts.
  """
  if 'compare' not in config:
    raise ValueError('the config has no `compare` section: use configs/compare_*.py, or add '
                     'config.compare.methods/fractions/seeds.')
  specs = plan_runs(config.compare)
  parallel, memory_fraction, progress_every_s = parse_parallel(config.compare)
  plot_fraction = float(config.compare.get('plot_fraction', -1.0))
  comparison = _Comparison(
      config=config, workdir=workdir, command=command, specs=specs,
      reference=cost_reference(config.compare) if any(s.matched for s in specs) else '',
      paths=workdir_lib.CompareDir(workdir),
      plot_fraction=plot_fraction if plot_fraction >= 0 else None,
      # The parent of concurrent runs never starts a JAX backend: it would hold device memory.
      is_writer=parallel > 1 or jax.process_index() == 0)
  comparison.paths.runs.mkdir(parents=True, exist_ok=True)
  if comparison.is_writer:
    workdir_lib.write_json(comparison.paths.config, {
        'config': workdir_lib.config_to_dict(config), 'command': command,
        'runs': [s.name for s in specs]})
  todo = comparison.collect_finished()  # first, so the first report already shows them
  if report_only or not todo:
    comparison.rewrite_report()
    return comparison.results_in_order()
  if parallel > 1:
    finished = comparison.run_concurrently(todo, parallel, memory_fraction, progress_every_s)
  else:
    finished = comparison.run_in_process(todo, train_fn or train.train_and_evaluate)
  if finished:
    print(f'report: {comparison.paths.report}', flush=True)
  else:  # stopped by a preemption or a signal, the runs checkpointed
    comparison.rewrite_report()
  return comparison.results_in_order()


@dataclasses.dataclass
class _Comparison:
  """One comparison's plan, where it writes, and the results of its runs so far."""
  config: ml_collections.ConfigDict
  workdir: str
  command: str
  specs: list[RunSpec]
  reference: str  # the method whose measured cost matched runs take ('' if none)
  paths: workdir_lib.CompareDir
  plot_fraction: float | None
  is_writer: bool
  results: dict[str, report.RunResult] = dataclasses.field(default_factory=dict)

  def spec_config(self, spec: RunSpec) -> ml_collections.ConfigDict:
    """The run's config (a matched run's with its reference's measured cost)."""
    if spec.matched:
      return run_config(self.config, spec, matched_cost(self.paths, self.reference, spec))
    return run_config(self.config, spec)

  def process_config(self, spec: RunSpec) -> ml_collections.ConfigDict:
    """The config of a run in its own process: its log.txt gets one line per epoch."""
    rc = self.spec_config(spec)
    rc.train.progress_bar = False
    return rc

  def result(self, spec: RunSpec, **kwargs: Any) -> report.RunResult:
    """A run's result for the report (`summary=` or `error=`; neither: not run yet)."""
    return report.RunResult(name=spec.name, method=spec.method, fraction=spec.fraction,
                            seed=spec.seed, run_dir=str(self.paths.run(spec.name).root),
                            frontier_cost=spec.cost, **kwargs)

  def results_in_order(self) -> list[report.RunResult]:
    """The results found or run, in the plan's order."""
    return [self.results[s.name] for s in self.specs if s.name in self.results]

  def rewrite_report(self) -> None:
    """report.md (and its plots) from every result so far."""
    if self.is_writer:
      report.write_report(
          self.workdir, [self.results.get(s.name) or self.result(s) for s in self.specs],
          base_config=base_run_config(self.config), command=self.command,
          methods=[s.method for s in self.specs if s.cost is None],
          plot_fraction=self.plot_fraction)

  def collect_finished(self) -> list[RunSpec]:
    """Records the runs finished before (or refused: of another config); the rest to run."""
    todo = []
    for spec in self.specs:
      path = self.paths.run(spec.name).summary
      if not path.exists():
        todo.append(spec)
        continue
      summary = workdir_lib.read_json(path)
      expected = workdir_lib.config_to_dict(self.spec_config(spec))
      changed = workdir_lib.config_differences(summary.get('config', {}), expected)
      if changed:
        self.results[spec.name] = self.result(spec, error=(
            f'{path} holds a finished run of a different config (fields: '
            f'{", ".join(changed[:5])}); move it away or use a new --workdir.'))
      else:
        self.results[spec.name] = self.result(spec, summary=summary)
    return todo

  def record(self, spec: RunSpec, summary: dict[str, Any] | None, error: str | None) -> None:
    """A run's end: its result, a console line, the report rewritten."""
    if error is not None:
      print(f'  failed {spec.name}: {error}', flush=True)
      self.results[spec.name] = self.result(spec, error=error)
    else:
      self.results[spec.name] = self.result(spec, summary=summary)
      print(f'  done {spec.name}: test accuracy {summary["test_accuracy"][-1]:.4f}, pruned '
            f'{summary["pruning"]["pruned_fraction"]:.3f}', flush=True)
    self.rewrite_report()

  def waits_for(self, spec: RunSpec) -> str | None:
    """The run a matched run waits for: its reference's of the same fraction and seed."""
    return RunSpec(self.reference, spec.fraction, spec.seed).name if spec.matched else None

  def run_concurrently(self, todo: list[RunSpec], parallel: int, memory_fraction: float,
                       progress_every_s: float) -> bool:
    """`parallel` runs at a time, each its own process; False: stopped by a signal."""
    share = run_pool.memory_fraction(parallel, memory_fraction)
    print(f'{len(todo)} runs, {parallel} at a time, each with {share:.3f} of device memory; '
          'their output: runs/*/log.txt', flush=True)
    order = sorted(todo, key=lambda s: s.method != self.reference)  # matched runs wait on these
    return run_pool.run_jobs(
        [run_pool.Job(s.name, self.paths.run(s.name), functools.partial(self.process_config, s),
                      after=self.waits_for(s)) for s in order],
        parallel=parallel, fraction=share,
        on_outcome=functools.partial(self.on_outcome, {s.name: s for s in todo}),
        progress_every_s=progress_every_s)

  def on_outcome(self, by_name: dict[str, RunSpec], outcome: run_pool.Outcome) -> None:
    """A concurrent run's end (a preempted one ends later, when rerun)."""
    if not outcome.preempted:
      self.record(by_name[outcome.name], outcome.summary, outcome.error)

  def run_in_process(self, todo: list[RunSpec], train_fn: TrainFn) -> bool:
    """One run after another in this process, sharing its traced and compiled programs
    (`loop`); False: preempted, the run checkpointed."""
    for i, spec in enumerate(todo):
      run_dir = self.paths.run(spec.name).root
      print(f'[{i + 1}/{len(todo)}] {spec.name} -> {run_dir}', flush=True)
      try:
        summary = train_fn(self.spec_config(spec), str(run_dir))
      except Exception as e:  # pylint: disable=broad-except
        if not isinstance(e, ValueError):  # config errors say all in their message
          logging.exception('run %s failed', spec.name)
        self.record(spec, None, run_pool.error_text(e))
      else:
        if summary.get('preempted'):
          print(f'  preempted at step {summary.get("step")}: rerun the same command to '
                'resume.', flush=True)
          return False
        self.record(spec, summary, None)
    return True


def command_line(argv: Sequence[str]) -> str:
  """The command as typed, reconstructed from sys.argv."""
  return ' '.join(shlex.quote(a) for a in ['python', '-m', 'eeprune_jax.compare', *argv[1:]])


FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> None:
  """Entry point of `python -m eeprune_jax.compare`."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:  # a bad compare section stops here, before any run starts
    if 'compare' not in FLAGS.config:
      raise ValueError('the config has no `compare` section: use configs/compare_*.py.')
    plan_runs(FLAGS.config.compare)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  run_comparison(FLAGS.config, FLAGS.workdir, command=command_line(sys.argv),
                 report_only=FLAGS.report_only)


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing this module is safe)."""
  config_flags.DEFINE_config_file('config', None, 'Compare config (configs/compare_*.py).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory of the comparison (runs/, report.md, plots).')
  flags.DEFINE_bool('report_only', False, 'Rewrite report.md and the plots from the runs '
                    'found in --workdir; start no run.')
  flags.mark_flags_as_required(['config', 'workdir'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
