"""What a run leaves in its workdir, and writing it without ever leaving half a file.

`RunDir` names every file of a run's workdir, `CompareDir` those of a comparison; code
elsewhere asks them and never spells a file name. Layout of a run's workdir:
  config.json          the run's config (a resumed run must match it)
  lock.json            the running run's pid, host and start time (one writer per workdir)
  checkpoints/         Orbax CheckpointManager: train state, keep mask, progress + ledger
  damaged_checkpoints/{step}/  checkpoints that could not be read, set aside on resume
                       (with DAMAGED.txt: the file and the reason)
  scores.npz           the latest pruning round's per-example scores and the keep mask
  scores_round{r}.npz  every pruning round's (round r = 0, 1, ...)
  keep_mask.npy        the current keep mask (bool [N], canonical index order)
  last_pass/epoch{e:04d}.npz  every example's latest training pass after epoch e
  score_networks/{k}/  Orbax checkpoints of EL2N's extra network k (prune.score_seeds)
  whatif/keep_mask_{method}.npy  masks `python -m eeprune_jax.whatif` wrote
  summary.json         config, test accuracy per exit, pruning statistics, cost ledger
  progress.json        the last finished epoch (what a comparison's status line shows)
  train_labels.npy     the training labels the tf.data backend read once (a resume reuses)
  tensorboard/         TensorBoard event files
  queued_config.json, log.txt, failure.txt  a run `compare.parallel` started as a process:
                       the config it was handed, its output, the error it stopped on
and of a comparison's:
  compare_config.json  the comparison's config, command and planned runs
  report.md            the report, beside its PNG plots
  runs/{name}/         one run's workdir per (method, fraction, seed)
Works with local paths and gs:// URLs (through etils.epath, as Orbax does).
"""

import io
import json
import os
from typing import Any, Sequence

from etils import epath
import ml_collections
import numpy as np

class RunDir:
  """The paths of a run's workdir."""

  def __init__(self, root: epath.PathLike):
    self.root = epath.Path(root)
    self.config = self.root / 'config.json'  # the run's config
    self.lock = self.root / 'lock.json'  # who is running in it (workdir_lock)
    self.checkpoints = self.root / 'checkpoints'  # Orbax CheckpointManager
    self.damaged_checkpoints = self.root / 'damaged_checkpoints'  # unreadable, set aside
    self.scores = self.root / 'scores.npz'  # the latest round's scores and keep mask
    self.keep_mask = self.root / 'keep_mask.npy'  # the current keep mask
    self.summary = self.root / 'summary.json'  # the finished run's summary
    self.tensorboard = self.root / 'tensorboard'  # TensorBoard event files
    self.last_pass_dir = self.root / 'last_pass'  # every example's latest training pass
    self.progress = self.root / 'progress.json'  # the last finished epoch
    # The training split's labels (int32 [N], canonical order), read once from the data so
    # that a resume does not read the split again (the tf.data backend).
    self.train_labels = self.root / 'train_labels.npy'
    # A run that `compare.parallel` runs as a process of its own (eeprune_jax.run_pool):
    self.queued_config = self.root / 'queued_config.json'  # the config it was handed
    self.log = self.root / 'log.txt'  # its stdout and stderr
    self.failure = self.root / 'failure.txt'  # the error it stopped on

  def scores_round(self, round_index: int) -> epath.Path:
    """Round `round_index`'s per-example scores and keep mask (.npz)."""
    return self.root / f'scores_round{round_index}.npz'

  def seed_network(self, k: int) -> epath.Path:
    """The checkpoints of the extra network k that EL2N scores with (prune.score_seeds)."""
    return self.root / 'score_networks' / str(k)

  def last_pass(self, epoch: int) -> epath.Path:
    """Every example's latest training pass as of the end of epoch `epoch` (1-based)."""
    return self.last_pass_dir / f'epoch{epoch:04d}.npz'

  def whatif_mask(self, method: str) -> epath.Path:
    """The default path of a what-if keep mask of rule `method` (bool .npy)."""
    return self.root / 'whatif' / f'keep_mask_{method}.npy'


class CompareDir:
  """The paths of a comparison's directory."""

  def __init__(self, root: epath.PathLike):
    self.root = epath.Path(root)
    self.config = self.root / 'compare_config.json'  # config, command, planned runs
    self.report = self.root / 'report.md'  # the report, beside its plots
    self.runs = self.root / 'runs'  # the runs' workdirs

  def plot(self, filename: str) -> epath.Path:
    """A plot of the report."""
    return self.root / filename

  def run(self, name: str) -> RunDir:
    """The workdir of run `name`."""
    return RunDir(self.runs / name)


# Fields a resumed run may change without changing the run itself.
MUTABLE_FIELDS = frozenset({
    'data.data_dir', 'data.npz_path', 'train.log_every_steps', 'train.progress_bar',
    'train.checkpoint_every_epochs', 'train.keep_checkpoints', 'train.compilation_cache_dir',
    'train.steps_per_dispatch', 'prune.class_warning_share',
})


def write_bytes(path: epath.PathLike, data: bytes) -> None:
  """Writes bytes atomically (temporary name, then rename)."""
  path = epath.Path(path)
  tmp = path.parent / f'.{path.name}.tmp-{os.getpid()}'
  tmp.write_bytes(data)
  tmp.replace(path)  # a reader sees the old file or the new one, never a partial one


def write_json(path: epath.PathLike, obj: Any, sort_keys: bool = True) -> None:
  """Writes JSON atomically (temporary name, then rename); keys sorted unless told not to
  (summary.json keeps its order: the headline facts come first)."""
  write_bytes(epath.Path(path), (json.dumps(obj, indent=2, sort_keys=sort_keys) + '\n').encode())


def write_npz(path: epath.PathLike, **arrays: np.ndarray) -> None:
  """Writes an uncompressed .npz atomically."""
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  write_bytes(epath.Path(path), buf.getvalue())


def write_npy(path: epath.PathLike, array: np.ndarray) -> None:
  """Writes a .npy atomically."""
  buf = io.BytesIO()
  np.save(buf, array)
  write_bytes(epath.Path(path), buf.getvalue())


def read_json(path: epath.PathLike) -> Any:
  """Reads a JSON file."""
  return json.loads(epath.Path(path).read_text())


def read_npz(path: epath.PathLike, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
  """Reads the arrays `keys` (default: every one) of an .npz into memory."""
  with epath.Path(path).open('rb') as f, np.load(f) as arrays:
    return {k: arrays[k] for k in (arrays.files if keys is None else keys)}


def flatten(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  """A nested dict as {'a.b': value}."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A JSON round-trippable dict of the config (tuples become lists)."""
  return json.loads(config.to_json())


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """Dotted fields whose values differ between a stored run config and the current one.

  Fields a resumed run may change are ignored, and so are fields the stored config does
  not have: a workdir written before a field existed keeps resuming (the field then takes
  its default).
  """
  a, b = flatten(stored), flatten(current)
  return sorted(k for k in a if k not in MUTABLE_FIELDS and a[k] != b.get(k))


def check_or_write_config(workdir: epath.PathLike, config: ml_collections.ConfigDict,
                          is_writer: bool, has_checkpoint: bool) -> None:
  """Stores the config in a new workdir, or checks that it matches the run stored there.

  Only a run with a checkpoint binds its workdir: a run that stopped before its first
  checkpoint (a bad learning rate, say) can be started again with a corrected config.
  """
  path = RunDir(workdir).config
  current = config_to_dict(config)
  if path.exists() and has_checkpoint:
    stored = read_json(path)
    changed = config_differences(stored, current)
    if changed:
      stored, now = flatten(stored), flatten(current)
      details = '; '.join(f'{k}: stored {stored.get(k)!r}, now {now.get(k)!r}' for k in changed[:5])
      raise ValueError(
          f'workdir {workdir} holds a run of a different config ({details}). Resume it with '
          f'the same config, or pass a new --workdir for a new run.')
  elif is_writer:  # a new run, or one that never reached a checkpoint
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    write_json(path, current)
