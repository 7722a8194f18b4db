"""Which Python processes a test run starts, and the CPU each spends (docs/test_suite.md).

  python tests/process_census.py install /tmp/census.jsonl   # into this venv
  python -m pytest -q tests
  python tests/process_census.py uninstall
  python tests/process_census.py summarize /tmp/census.jsonl

`install` puts a `.pth` file into this interpreter's site-packages: every process of that
Python (pytest's workers, the runs tests start, spawned grain workers) then appends one JSON
line at its exit: argv, CPU seconds, whether it imported TensorFlow, its xdist worker. A
process killed before its exit (SIGKILL) writes nothing, nor do other programs (gcloud,
bash). `uninstall` removes both files; a census left installed slows nothing but logs on.
"""

import collections
import json
import os
import sys
import sysconfig

_MODULE, _PTH = 'eeprune_census.py', 'eeprune_census.pth'
_HOOK = '''import atexit, json, os, resource, sys


def _log(path={path!r}):
  usage = resource.getrusage(resource.RUSAGE_SELF)
  row = dict(argv=sys.argv[:4], cpu=usage.ru_utime + usage.ru_stime,
             tf=sys.modules.get('tensorflow') is not None,
             worker=os.environ.get('PYTEST_XDIST_WORKER', ''))
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps(row) + '\\n')


atexit.register(_log)
'''


def _site() -> str:
  return sysconfig.get_paths()['purelib']


def install(path: str) -> None:
  """Starts the census of this interpreter's processes into `path` (emptied)."""
  open(path, 'w', encoding='utf-8').close()
  with open(os.path.join(_site(), _MODULE), 'w', encoding='utf-8') as f:
    f.write(_HOOK.format(path=os.path.abspath(path)))
  with open(os.path.join(_site(), _PTH), 'w', encoding='utf-8') as f:
    f.write('import eeprune_census\n')


def uninstall() -> None:
  """Ends the census."""
  for name in (_PTH, _MODULE):
    if os.path.exists(os.path.join(_site(), name)):
      os.remove(os.path.join(_site(), name))


def _kind(row: dict) -> str:
  """A process's kind: its script's file name, `-m` module, or `-c` for inline code."""
  first = row['argv'][0] if row['argv'] else ''
  return first if first.startswith('-') else os.path.basename(first)


def summarize(path: str, top: int = 15) -> str:
  """Totals, CPU per kind of process, and the `top` processes by CPU seconds."""
  rows = [json.loads(line) for line in open(path, encoding='utf-8')]
  lines = [f"{len(rows)} processes, {sum(r['cpu'] for r in rows):,.0f} CPU-s; "
           f"{sum(r['tf'] for r in rows)} imported TensorFlow"]
  kinds: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in rows:
    kinds[_kind(r)].update(n=1, cpu=r['cpu'])
  lines.append(f"{'n':>4} {'cpu':>7}  kind")
  for name, k in sorted(kinds.items(), key=lambda kv: -kv[1]['cpu']):
    lines.append(f"{k['n']:4d} {k['cpu']:7.1f}  {name}")
  lines.append(f"{'cpu':>7} {'tf':>2} {'worker':>6}  argv")
  for r in sorted(rows, key=lambda r: -r['cpu'])[:top]:
    lines.append(f"{r['cpu']:7.1f} {int(r['tf']):2d} {r['worker']:>6}  {' '.join(r['argv'])}")
  return '\n'.join(lines)


if __name__ == '__main__':
  command = sys.argv[1] if len(sys.argv) > 1 else ''
  if command == 'install' and len(sys.argv) == 3:
    install(sys.argv[2])
  elif command == 'uninstall':
    uninstall()
  elif command == 'summarize' and len(sys.argv) == 3:
    print(summarize(sys.argv[2]))
  else:
    sys.exit(__doc__)
