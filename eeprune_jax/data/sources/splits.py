"""Split specs and how a split's examples are shared out: the same rules for every source.

A split spec is `name` or `name[from:to]`, with TFDS's syntax and semantics
(https://www.tensorflow.org/datasets/splits), so a spec means the same examples whichever
source reads it:
* `from`/`to` are example counts (`train[:2000]`, `train[2000:]`, `train[-500:]`; negative
  counts from the end, as in Python) or percentages (`train[:10%]`, `test[25%:75%]`,
  fractional allowed; a '%' on either boundary makes both percentages), each percentage
  boundary rounded to the closest example, `round(p * N / 100)` with Python's round
  (TFDS's default 'closest' rounding);
* a boundary beyond the split (|from| or |to| > N) is an error, as is an empty slice;
* the slice holds the canonical examples [start, end) of the whole split, and its
  examples are indexed 0..end-start-1 in that order: stable indices count from the
  start of the slice, so `train[1000:]` example 0 is whole-split example 1000;
* one split per spec: compound specs (`train+test`) are refused; TFDS's `shard` unit
  works for 'tfds' only ('digits' and 'npz' have no shards).
For 'tfds' TFDS itself resolves the spec; 'digits' and 'npz' use `slice_range` below (no
TensorFlow needed), which tests check against TFDS on the same specs.

The roles 'train' and 'eval' stand for `config.data.train_split` / `eval_split`
(`resolve_split`); any other string is a split name of the source.
"""

import dataclasses
import re
from typing import Any, Callable

_SPEC_RE = re.compile(r'^(?P<name>[\w-]+)(\[(?P<selector>[^\]]*)\])?$')
_BOUND_RE = re.compile(r'^(?P<value>-?[\d_.]+)(?P<unit>%)?$')
_HELP = ("write 'train', 'train[:2000]', 'train[2000:]', 'train[:10%]' or "
         "'test[25%:75%]' (one split, a Python-style slice of counts or percentages)")


def resolve_split(data_config: Any, split: str) -> str:
  """Maps the roles 'train'/'eval' to the configured split names; other names pass."""
  if split == 'train':
    return data_config.train_split
  if split == 'eval':
    return data_config.eval_split
  return split


@dataclasses.dataclass(frozen=True)
class SplitSlice:
  """A parsed split spec: the base split name and the slice boundaries as written."""
  name: str
  start: float | None = None  # None = from the beginning
  end: float | None = None  # None = to the end
  percent: bool = False

  def range(self, num_examples: int) -> tuple[int, int]:
    """[start, end) in the whole split's canonical indices, for a split of num_examples."""
    n = num_examples
    bounds = []
    for value, default in ((self.start, 0), (self.end, n)):
      if value is None:
        bounds.append(default)
        continue
      b = int(round(value * n / 100.0)) if self.percent else int(value)
      if abs(b) > n:
        raise ValueError(f'split {self.spec()!r}: boundary {b} is outside the {n} examples '
                         f'of split {self.name!r}.')
      bounds.append(n + b if b < 0 else b)
    start, end = bounds
    if start >= end:
      raise ValueError(f'split {self.spec()!r} selects no example of the {n} in split '
                       f'{self.name!r} (examples [{start}, {end})).')
    return start, end

  def spec(self) -> str:
    """The spec, written back."""
    if self.start is None and self.end is None:
      return self.name
    unit = '%' if self.percent else ''
    fmt = lambda v: '' if v is None else f'{v:g}{unit}'
    return f'{self.name}[{fmt(self.start)}:{fmt(self.end)}]'


def _bound(spec: str, part: str, match: Any, percent: bool) -> float | None:
  """One boundary's value (None: open)."""
  if match is None:
    return None
  try:
    return float(match.group('value')) if percent else int(match.group('value'))
  except ValueError:
    raise ValueError(f'split {spec!r}: {part!r} is not a '
                     f'{"number" if percent else "whole number of examples"}; '
                     f'{_HELP}.') from None


def parse_split(spec: str) -> SplitSlice:
  """Parses `name` or `name[from:to]` (see the module docstring); raises ValueError."""
  spec = str(spec).strip()
  if '+' in spec:
    raise ValueError(f'split {spec!r}: compound splits (a+b) are not supported; {_HELP}.')
  m = _SPEC_RE.match(spec)
  if not m:
    raise ValueError(f'split {spec!r} is not a split spec: {_HELP}.')
  name, selector = m.group('name'), m.group('selector')
  if selector is None:
    return SplitSlice(name)
  parts = selector.split(':')
  if len(parts) != 2 or not any(p.strip() for p in parts):
    raise ValueError(f'split {spec!r} is not a split spec: {_HELP}.')
  matches = []
  for part in parts:
    bm = _BOUND_RE.match(part) if part else None
    if part and not bm:
      raise ValueError(f'split {spec!r}: {part!r} is not a count or a percentage; {_HELP}.')
    matches.append(bm)
  # As in TFDS, a '%' on either boundary makes both percentages.
  percent = any(bm is not None and bm.group('unit') == '%' for bm in matches)
  start, end = (_bound(spec, part, bm, percent) for part, bm in zip(parts, matches))
  return SplitSlice(name, start, end, percent=percent)


def slice_range(spec: str, base_size: Callable[[str], int]) -> tuple[str, int, int]:
  """(base split name, start, end) of a split spec; `base_size(name)` gives split sizes."""
  sl = parse_split(spec)
  start, end = sl.range(base_size(sl.name))
  return sl.name, start, end


def process_range(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """The contiguous [start, end) share of n examples read by one process (balanced)."""
  return n * process_index // process_count, n * (process_index + 1) // process_count


def ceil_div(a: int, b: int) -> int:
  """ceil(a / b) for non-negative ints."""
  return -(-a // b)
