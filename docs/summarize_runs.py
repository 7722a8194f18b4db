"""Prints markdown tables of finished runs from their summary.json files.

  python docs/summarize_runs.py RUN_DIR...             one row per run (accuracy, ledger)
  python docs/summarize_runs.py --history RUN_DIR...   test accuracy after every epoch
  python docs/summarize_runs.py --rounds RUN_DIR...    pruning rounds (effective threshold)

Every figure comes from each run's summary.json (written by eeprune_jax.main); this is
how the tables in docs/results.md are made.
"""

import sys

from etils import epath

from eeprune_jax import workdir as workdir_lib


def _summary(run_dir: epath.Path) -> dict:
  """A run's summary.json."""
  return workdir_lib.read_json(workdir_lib.RunDir(run_dir).summary)


def row(run_dir: epath.Path) -> str:
  """One table row for one run directory."""
  s = _summary(run_dir)
  cfg, ledger, pruning = s['config'], s['ledger'], s['pruning']
  accs = ' / '.join(f'{100 * a:.2f}' for a in s['test_accuracy'])
  secs = ledger['seconds']
  return (f"| {run_dir.name} | {cfg['prune']['method']} | {cfg['train']['num_epochs']} | "
          f"{100 * s['test_accuracy'][-1]:.2f} | {accs} | {pruning['pruned_fraction']:.3f} | "
          f"{ledger['examples_trained']:,} | {ledger['examples_scored']:,} | "
          f"{ledger['cost_vs_full_data']:.3f} | {secs['train'] / 60:.1f} | "
          f"{secs['score'] / 60:.2f} |")


def history(run_dirs: list[epath.Path]) -> None:
  """Final-exit test accuracy (%) after every epoch, one row per run."""
  summaries = [_summary(d) for d in run_dirs]
  epochs = max(len(s['history']) for s in summaries)
  print('| run | ' + ' | '.join(str(e + 1) for e in range(epochs)) + ' |')
  print('| --- |' + ' ---: |' * epochs)
  for d, s in zip(run_dirs, summaries):
    accs = [f"{100 * h['eval_accuracy'][-1]:.1f}" for h in s['history']]
    print(f'| {d.name} | ' + ' | '.join(accs) + ' |')


def rounds(run_dirs: list[epath.Path]) -> None:
  """Every pruning round: target, pruned, shortfall, effective threshold, class extremes."""
  print('| run | round | epoch | target | pruned | shortfall | effective threshold | '
        'pruned share per class, min / max |')
  print('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
  for d in run_dirs:
    s = _summary(d)
    per_class = s['pruning']['pruned_fraction_per_class']
    for r in s['pruning']['rounds']:
      cutoff = '-' if r['cutoff'] is None else f"{r['cutoff']:.3f}"
      print(f"| {d.name} | {r['round']} | {r['epoch']} | {r['target_pruned']:,} | "
            f"{r['num_pruned']:,} | {r['shortfall']:,} | {cutoff} | "
            f"{min(per_class):.2f} / {max(per_class):.2f} |")


def main(argv: list[str]) -> None:
  if argv and argv[0] in ('--history', '--rounds'):
    (history if argv[0] == '--history' else rounds)([epath.Path(d) for d in argv[1:]])
    return
  print('| run | method | epochs | test acc (final exit, %) | test acc per exit (%) | '
        'pruned | examples trained on | examples scored | cost vs full data (MACs) | '
        'train min | score min |')
  print('| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for d in argv:
    print(row(epath.Path(d)))


if __name__ == '__main__':
  main(sys.argv[1:])
