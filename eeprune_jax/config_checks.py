"""Config validation: every bad value is reported, with its field and fix, before compute.

This module owns every rule about config values; model, data and mesh code only assert
what it has checked. Method-specific rules come from the method's properties
(`methods.Method`), so no rule here names a method.
"""

import re

from etils import epath
import jax
import ml_collections
import numpy as np

from eeprune_jax import methods
from eeprune_jax import models
from eeprune_jax import data as data_lib
from eeprune_jax.data import augment
from eeprune_jax.data import sources as data_sources

SOURCES = data_sources.names()
BACKENDS = tuple(data_lib.BACKENDS)
OPTIMIZERS = ('sgd', 'adamw')
EXIT_LOSS_SCHEDULES = ('constant', 'sdn')
PRUNE_MODES = ('fraction', 'threshold')


class ConfigError(ValueError):
  """A config value that cannot run; the message lists every bad field and its fix."""


def _one_of(errors: list[str], field: str, value, choices) -> None:
  if value not in choices:
    errors.append(f'config.{field}={value!r} is not one of {", ".join(map(repr, choices))}.')


def _check(errors: list[str], ok: bool, message: str) -> None:
  if not ok:
    errors.append(message)


def _check_exits(errors: list[str], m: ml_collections.ConfigDict) -> int | None:
  """`model.exits` is a preset or ascending, distinct block indices; returns the count."""
  cls = models.model_class(m.name)
  n, spec = cls.NUM_BLOCKS, str(m.exits).strip()
  if spec == 'none':
    return 0
  if spec in cls.PRESETS:
    return len(cls.PRESETS[spec])
  where = (f'{m.name} has {n} blocks, valid indices 0..{n - 1}; presets: '
           f'{", ".join(models.PRESETS)}')
  if not re.fullmatch(r'\s*\d+\s*(,\s*\d+\s*)*', spec):
    errors.append(f'config.model.exits={spec!r} is neither a preset nor comma-separated '
                  f'block indices ({where}).')
    return None
  blocks = [int(b) for b in spec.split(',')]
  bad = [b for b in blocks if b >= n]
  for ok, problem in ((len(set(blocks)) == len(blocks), 'repeats a block'),
                      (blocks == sorted(blocks), 'must be sorted shallow to deep'),
                      (not bad, f'has blocks {bad} out of range')):
    if not ok:
      errors.append(f'config.model.exits={spec!r} {problem} ({where}).')
      return None
  return len(blocks)


def _check_model(errors: list[str], m: ml_collections.ConfigDict) -> int | None:
  """Appends the model section's errors; returns the number of exits if they are valid."""
  _one_of(errors, 'model.name', m.name, models.MODEL_NAMES)
  _one_of(errors, 'model.stem', m.stem, models.STEMS)
  _one_of(errors, 'model.exit_head', m.exit_head, models.EXIT_HEADS)
  _one_of(errors, 'model.dtype', m.dtype, models.DTYPES)
  _check(errors, m.width > 0, f'config.model.width={m.width} must be > 0.')
  if m.name not in models.MODEL_NAMES:
    return None
  stems = models.model_class(m.name).STEMS
  _check(errors, m.stem not in models.STEMS or m.stem in stems,
         f'config.model.stem={m.stem!r} is not supported by {m.name}; valid: '
         f'{", ".join(stems)}.')
  return _check_exits(errors, m)


def validate_model(model_config: ml_collections.ConfigDict) -> None:
  """Checks the model section alone (tools that build a model without data); ConfigError."""
  errors: list[str] = []
  _check_model(errors, model_config)
  if errors:
    raise ConfigError('invalid config:\n  ' + '\n  '.join(errors))


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field that can be checked without loading data; raises ConfigError."""
  errors: list[str] = []
  d, m, t, p = config.data, config.model, config.train, config.prune
  _one_of(errors, 'data.source', d.source, SOURCES)
  _one_of(errors, 'data.backend', d.backend, BACKENDS)
  _one_of(errors, 'data.augment', d.augment, augment.KINDS)
  if d.source in SOURCES:
    errors.extend(data_sources.source_of(d).config_errors(d))
  _check(errors, d.grain_workers >= -1,
         f'config.data.grain_workers={d.grain_workers} must be >= -1 (-1: one per CPU core, '
         '0: no worker processes).')
  _check(errors, isinstance(d.get('download', True), bool),
         f'config.data.download={d.get("download")!r} must be True or False.')
  _check(errors, d.image_size >= 8, f'config.data.image_size={d.image_size} must be >= 8.')
  _check(errors, 0 < d.device_memory_share <= 1,
         f'config.data.device_memory_share={d.device_memory_share} must be in (0, 1].')

  num_exits = _check_model(errors, m)

  devices = jax.device_count()
  _check(errors, t.num_epochs >= 1, f'config.train.num_epochs={t.num_epochs} must be >= 1.')
  for field in ('batch_size', 'eval_batch_size'):
    size = t[field]
    _check(errors, size >= 1 and size % devices == 0,
           f'config.train.{field}={size} is not a positive multiple of the device count '
           f'({devices}): use e.g. {max(devices, (max(size, 1) // devices) * devices)}.')
  _one_of(errors, 'train.optimizer', t.optimizer, OPTIMIZERS)
  _one_of(errors, 'train.exit_loss_schedule', t.exit_loss_schedule, EXIT_LOSS_SCHEDULES)
  _check(errors, t.learning_rate > 0, f'config.train.learning_rate={t.learning_rate} must be > 0.')
  _check(errors, t.weight_decay >= 0, f'config.train.weight_decay={t.weight_decay} must be >= 0.')
  _check(errors, 0 <= t.warmup_epochs < t.num_epochs,
         f'config.train.warmup_epochs={t.warmup_epochs} must be in [0, num_epochs).')
  _check(errors, 0 <= t.label_smoothing < 1,
         f'config.train.label_smoothing={t.label_smoothing} must be in [0, 1).')
  _check(errors, t.exit_loss_weight >= 0,
         f'config.train.exit_loss_weight={t.exit_loss_weight} must be >= 0.')
  for field in ('log_every_steps', 'checkpoint_every_epochs', 'keep_checkpoints'):
    _check(errors, t[field] >= 1, f'config.train.{field}={t[field]} must be >= 1.')
  _check(errors, 0.0 < p.cost_fraction <= 1.0,
         f'config.prune.cost_fraction={p.cost_fraction} is outside (0, 1]: it is the share '
         'of the full schedule a cost-matched run trains (0.6 trains 60% of the epochs).')
  _check(errors, t.steps_per_dispatch >= 0,
         f'config.train.steps_per_dispatch={t.steps_per_dispatch} must be >= 0 (0 = auto).')

  _one_of(errors, 'prune.method', p.method, methods.names())
  _one_of(errors, 'prune.mode', p.mode, PRUNE_MODES)
  _check(errors, 0.0 <= p.threshold <= 1.0,
         f'config.prune.threshold={p.threshold} is outside [0, 1]: it is a softmax confidence.')
  _check(errors, 0.0 <= p.fraction < 1.0,
         f'config.prune.fraction={p.fraction} is outside [0, 1): it is the share of the '
         'training set to prune (0.4 prunes 40%).')
  _check(errors, p.every >= 0, f'config.prune.every={p.every} must be >= 0 (0 = prune once).')
  _check(errors, p.grand_chunk >= 1,
         f'config.prune.grand_chunk={p.grand_chunk} must be >= 1: it is how many examples '
         "GraNd's per-example gradients are computed for at once (more: faster, more memory).")
  _check(errors, 0.0 < p.class_warning_share <= 1.0,
         f'config.prune.class_warning_share={p.class_warning_share} is outside (0, 1]: it is '
         'the pruned share of a class that triggers the warning (0.9 = 90% or more; 1.0 = '
         'only a class pruned entirely).')
  method = methods.get(p.method) if p.method in methods.names() else None
  if method is not None and method.prunes:
    _check(errors, 0 <= p.epoch < t.num_epochs,
           f'config.prune.epoch={p.epoch} must be in [0, train.num_epochs={t.num_epochs}): '
           'pruning happens at the start of that epoch.')
  if method is not None and method.early_exit and num_exits is not None:
    _check(errors, num_exits >= 1,
           f'config.prune.method={p.method!r} needs an early exit, but config.model.exits='
           f"{m.exits!r} configures none: set model.exits='mid' (or block indices).")
    _check(errors, num_exits == 0 or 0 <= p.exit < num_exits,
           f'config.prune.exit={p.exit} is not an exit index: the model has {num_exits} '
           f'exit(s), so use 0..{num_exits - 1}.')
  _check(errors, not p.mask_path or epath.Path(p.mask_path).exists(),
         f'config.prune.mask_path={p.mask_path!r} is not a file: point it at a keep mask '
         "(bool .npy [N], e.g. a run's keep_mask.npy), or leave it '' to start from all "
         'examples.')
  if errors:
    raise ConfigError('invalid config:\n  ' + '\n  '.join(errors))


def start_mask(config: ml_collections.ConfigDict, num_train: int) -> np.ndarray | None:
  """The keep mask `prune.mask_path` starts the run from (bool [N]); None without one.

  Refuses, naming the file and the fix, a mask that is not a bool array of one entry per
  training example, or that keeps fewer examples than a batch.
  """
  path, batch = config.prune.mask_path, config.train.batch_size
  if not path:
    return None
  where = f'config.prune.mask_path={path!r}'
  try:
    with epath.Path(path).open('rb') as f:
      mask = np.load(f, allow_pickle=False)
  except FileNotFoundError:
    raise ConfigError(f'{where} is not a file: point it at a keep mask (bool .npy [N]).'
                      ) from None
  except (ValueError, OSError) as e:
    raise ConfigError(f'{where} is not a .npy array ({e}): save the mask with np.save.'
                      ) from None
  if mask.dtype != np.bool_:
    raise ConfigError(f'{where} holds {mask.dtype}, not bool: save the keep mask as bool '
                      '(True = train on it), e.g. np.save(path, mask.astype(bool)).')
  if mask.shape != (num_train,):
    raise ConfigError(f'{where} has shape {mask.shape}, but the training split has '
                      f'{num_train} examples: use a mask of this data set and split '
                      f'(config.data.train_split={config.data.train_split!r}).')
  kept = int(mask.sum())
  if kept < batch:
    raise ConfigError(f'{where} keeps {kept} of {num_train} examples, fewer than '
                      f'config.train.batch_size={batch}: keep more or lower the batch size.')
  return mask


def validate_with_data(config: ml_collections.ConfigDict, num_train: int) -> None:
  """Checks that need the data set's size (before any training step)."""
  t, p = config.train, config.prune
  kept = num_train - round(p.fraction * num_train) if p.mode == 'fraction' else num_train
  if methods.get(p.method).prunes and p.mode == 'fraction' and kept < t.batch_size:
    raise ConfigError(
        f'config.prune.fraction={p.fraction} keeps {kept} of {num_train} examples, fewer than '
        f'config.train.batch_size={t.batch_size}: lower one of them.')
  start_mask(config, num_train)
  if num_train < t.batch_size:
    raise ConfigError(f'config.train.batch_size={t.batch_size} exceeds the {num_train} training '
                      'examples: lower it.')
