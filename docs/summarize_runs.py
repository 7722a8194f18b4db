"""Prints a markdown table of finished runs: `python docs/summarize_runs.py RUN_DIR...`.

Every figure comes from each run's summary.json (written by eeprune_jax.main); this is
how the tables in docs/results.md are made.
"""

import json
import pathlib
import sys


def row(run_dir: pathlib.Path) -> str:
  """One table row for one run directory."""
  s = json.loads((run_dir / 'summary.json').read_text())
  cfg, ledger, pruning = s['config'], s['ledger'], s['pruning']
  accs = ' / '.join(f'{100 * a:.2f}' for a in s['test_accuracy'])
  secs = ledger['seconds']
  return (f"| {run_dir.name} | {cfg['prune']['method']} | {cfg['train']['num_epochs']} | "
          f"{100 * s['test_accuracy'][-1]:.2f} | {accs} | {pruning['pruned_fraction']:.3f} | "
          f"{ledger['examples_trained']:,} | {ledger['examples_scored']:,} | "
          f"{ledger['cost_vs_full_data']:.3f} | {secs['train'] / 60:.1f} | "
          f"{secs['score'] / 60:.2f} |")


def main(argv: list[str]) -> None:
  print('| run | method | epochs | test acc (final exit, %) | test acc per exit (%) | '
        'pruned | examples trained on | examples scored | cost vs full data (MACs) | '
        'train min | score min |')
  print('| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for d in argv:
    print(row(pathlib.Path(d)))


if __name__ == '__main__':
  main(sys.argv[1:])
