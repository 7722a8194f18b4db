"""Inspects a run's checkpoints: `python -m eeprune_jax.inspect --workdir=DIR [--step=N]`.

Prints the available steps (and those that cannot be read, with the file and the reason), the parameter tree (shapes and counts per module, exit heads
marked), keep-mask statistics overall and per class, pruning rounds and the cost ledger.
Needs no model code and no data: everything comes from the Orbax checkpoint and the
workdir's files. `--json` prints one JSON object instead.
"""

import dataclasses
import json
from typing import Any

from absl import app
from absl import flags
import jax
import numpy as np

from eeprune_jax import checkpointing
from eeprune_jax import masks
from eeprune_jax import run_summary
from eeprune_jax import workdir as workdir_lib

FLAGS = flags.FLAGS


def parameter_table(params: Any, depth: int) -> list[dict[str, Any]]:
  """Parameter counts per module path, to `depth` levels; leaves below are summed."""
  rows: dict[str, dict[str, Any]] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [getattr(k, 'key', getattr(k, 'name', str(k))) for k in path]
    module = '/'.join(names[:depth])
    row = rows.setdefault(module, {'module': module, 'params': 0, 'shapes': []})
    row['params'] += int(np.prod(leaf.shape))
    if len(names) <= depth + 1:
      row['shapes'].append(f'{names[-1]}{list(leaf.shape)}')
  return list(rows.values())


def inspect_workdir(workdir: str, step: int | None = None, depth: int = 2) -> dict[str, Any]:
  """Everything `inspect` prints, as a dict."""
  ckpt = checkpointing.restore_untyped(workdir, step)
  params = ckpt['state']['params']
  table = parameter_table(params, depth)
  heads = {}
  for row in table:
    top = row['module'].split('/')[0]
    if top.startswith('exit_'):
      heads[top] = heads.get(top, 0) + row['params']
  keep, paths = ckpt['keep'], workdir_lib.RunDir(workdir)
  labels = (workdir_lib.read_npz(paths.scores, ['label'])['label'] if paths.scores.exists()
            else None)
  if labels is not None and len(labels) == len(keep):
    mask = masks.mask_stats(keep, labels, int(labels.max()) + 1)
  else:  # no pruning round yet: no labels stored, overall numbers only
    mask = {'num_examples': int(keep.size), 'num_kept': int(keep.sum()),
            'num_pruned': int((~keep).sum()), 'pruned_fraction': float((~keep).mean())}
  summary = workdir_lib.read_json(paths.summary) if paths.summary.exists() else {}
  per_class = mask.get('pruned_fraction_per_class')
  class_names = None
  if per_class:
    data_config = workdir_lib.read_json(paths.config)['data'] if paths.config.exists() else {}
    class_names = list(run_summary.class_names(summary, data_config, len(per_class)))
  rs = ckpt['progress']
  return {
      'workdir': str(workdir), 'steps': ckpt['all_steps'], 'step': ckpt['step'],
      'unreadable': [dataclasses.asdict(d) for d in ckpt['unreadable']],
      'epoch': rs.epoch, 'step_in_epoch': rs.step_in_epoch,
      'total_params': sum(r['params'] for r in table), 'exit_head_params': heads,
      'param_tree': table, 'mask': mask, 'class_names': class_names,
      'pruning_rounds': rs.rounds,
      'ledger': summary.get('ledger', rs.ledger.to_dict()),
      'test_accuracy': summary.get('test_accuracy'),
      'warnings': (summary.get('headline') or {}).get('warnings', []),
  }


def _print_text(info: dict[str, Any]) -> None:
  print(f"workdir: {info['workdir']}")
  print(f"checkpoint steps: {info['steps']}  (showing {info['step']}, epoch {info['epoch']}"
        f"{', mid-epoch step ' + str(info['step_in_epoch']) if info['step_in_epoch'] else ''})")
  for d in info['unreadable']:
    print(f"  UNREADABLE checkpoint {d['step']}: {d['file']}: {d['reason']}")
  print(f"\nparameters: {info['total_params']:,}")
  for row in info['param_tree']:
    print(f"  {row['module']:<40} {row['params']:>12,}  {' '.join(row['shapes'][:4])}")
  for head, count in info['exit_head_params'].items():
    print(f'  exit head {head}: {count:,} parameters')
  m = info['mask']
  print(f"\nkeep mask: {m['num_kept']:,} kept, {m['num_pruned']:,} pruned of "
        f"{m['num_examples']:,} ({m['pruned_fraction']:.1%})")
  if 'pruned_fraction_per_class' in m:
    names = info['class_names']
    shares = ' '.join(f'{names[c]}:{s:.0%}' for c, s in enumerate(m['pruned_fraction_per_class']))
    print(f'  pruned per class: {shares}')
  for r in info['pruning_rounds']:
    print(f"  round {r['round']} at epoch {r['epoch']}: pruned {r['num_pruned']} "
          f"(target {r['target_pruned']}, shortfall {r['shortfall']}, cutoff {r['cutoff']})")
    if r.get('emptied_classes') and not info['warnings']:  # the summary's warnings say it
      print(f"    WARNING: {run_summary.emptied_warning(r['emptied_classes'], 'it')}")
  if info['test_accuracy']:
    print(f"\ntest accuracy per exit (final last): {info['test_accuracy']}")
  for w in info['warnings']:
    print(f'WARNING: {w}')
  print('\nledger:')
  for key, value in info['ledger'].items():
    print(f'  {key}: {value}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  info = inspect_workdir(FLAGS.workdir, FLAGS.step, FLAGS.depth)
  if FLAGS.json:
    print(json.dumps(info, indent=2))
  else:
    _print_text(info)


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing this module is safe)."""
  flags.DEFINE_string('workdir', None, 'The run directory to inspect.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')
  flags.DEFINE_integer('depth', 2, 'Depth of the parameter tree to print.')
  flags.mark_flag_as_required('workdir')


if __name__ == '__main__':
  define_flags()
  app.run(main)
