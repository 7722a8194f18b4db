"""Native stacks of pytest workers that stop using CPU (docs/test_suite.md: the long waits).

  python -m pytest -q tests &
  python tests/stall_monitor.py $! /tmp/stalls    # pytest's pid; gdb must be installed

Every 2 s it reads the CPU time of each child of that process (the xdist workers). A
worker that used none over two readings (4 s) and has no child process of its own (a test
waiting on a subprocess is not stalled) gets `gdb -p PID -batch`: the main thread's whole
stack, then every thread's innermost frames, into OUT_DIR/gdb-PID-N.txt (at most
`MAX_DUMPS` per worker). It runs outside the workers because a stalled worker may hold the
GIL, so no thread inside it runs; gdb stops the worker while it reads it. Ends with pytest.
"""

import os
import subprocess
import sys
import time

MAX_DUMPS = 6
IDLE_READINGS = 2
POLL_S = 2


def _children(pid: int) -> list[int] | None:
  """The child processes of `pid` (None: it has ended)."""
  try:
    return [int(c) for t in os.listdir(f'/proc/{pid}/task')
            for c in open(f'/proc/{pid}/task/{t}/children', encoding='ascii').read().split()]
  except OSError:
    return None


def _cpu_ticks(pid: int) -> int | None:
  """User + system clock ticks of `pid` (None: it has ended)."""
  try:
    stat = open(f'/proc/{pid}/stat', encoding='ascii').read()
  except OSError:
    return None
  fields = stat[stat.rindex(')') + 2:].split()
  return int(fields[11]) + int(fields[12])


def _dump(pid: int, path: str) -> None:
  out = subprocess.run(['gdb', '-p', str(pid), '-batch', '-ex', 'thread 1', '-ex', 'bt',
                        '-ex', 'thread apply all bt 14'],
                       capture_output=True, text=True, timeout=120, check=False)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(time.ctime() + '\n' + out.stdout + out.stderr)


def monitor(root: int, out_dir: str) -> None:
  """Watches the children of process `root` until it ends (see the module docstring)."""
  os.makedirs(out_dir, exist_ok=True)
  last: dict[int, int] = {}
  idle: dict[int, int] = {}
  dumps: dict[int, int] = {}
  while (workers := _children(root)) is not None:
    for pid in workers:
      ticks = _cpu_ticks(pid)
      if ticks is None:
        continue
      idle[pid] = idle.get(pid, 0) + 1 if last.get(pid) == ticks and not _children(pid) else 0
      last[pid] = ticks
      if idle[pid] == IDLE_READINGS and dumps.get(pid, 0) < MAX_DUMPS:
        dumps[pid] = dumps.get(pid, 0) + 1
        _dump(pid, os.path.join(out_dir, f'gdb-{pid}-{dumps[pid]}.txt'))
    time.sleep(POLL_S)


if __name__ == '__main__':
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  monitor(int(sys.argv[1]), sys.argv[2])
