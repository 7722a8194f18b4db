"""The config schema shared by every config file in `configs/`.

Each `configs/*.py` starts from `base_config()` and overrides fields. The comments here
are the reference for every field; `config_checks.validate` rejects bad values before any
compute starts.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Returns the full config tree with defaults (EEPrune on the digits demo data)."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # --- Data -------------------------------------------------------------------------
  config.data = data = ml_collections.ConfigDict()
  # 'digits': the scikit-learn handwritten digits, embedded, no network.
  # 'tfds': any TFDS image classification data set named by `data.name`.
  # 'npz': in-memory arrays from `data.npz_path` (keys images/labels, or the JPEG layout).
  data.source = 'digits'
  data.name = ''  # TFDS name when source == 'tfds', e.g. 'cifar10'.
  data.data_dir = ''  # TFDS data dir: a local path or a gs:// bucket URL; '' = TFDS default.
  # A TFDS data set not prepared in data_dir is downloaded and prepared there first (once;
  # an unreachable host stops it within about 12 s). False: never download, stop instead.
  data.download = True
  data.npz_path = ''  # path of the .npz file when source == 'npz'.
  # A split or a slice of one, in TFDS's syntax for every source: 'train[:2000]',
  # 'train[2000:]', 'train[:10%]' (see eeprune_jax/data/sources/splits.py).
  data.train_split = 'train'
  data.eval_split = 'test'
  data.image_size = 32  # images are resized/padded to image_size x image_size.
  # 'device': whole split on the accelerators as uint8, augmentation in JAX (no TF needed).
  # 'tfdata': a tf.data pipeline on the host (needed for data that does not fit on device).
  # 'grain': grain workers read only the kept examples at random, in the device backend's
  # order (TFDS data in ArrayRecord format; `tfds convert_format` converts a TFRecord copy).
  data.backend = 'device'
  # 'device' backend: refuse, before decoding anything, data whose uint8 train + eval images
  # (held on every device) exceed this share of one device's memory (on CPUs: host memory
  # over the local device count). The rest holds parameters, activations, optimizer state.
  data.device_memory_share = 0.5
  # grain backend: worker processes that read, decode and augment; -1 = one per CPU core
  # of the process, 0 = none (reader threads in the training process).
  data.grain_workers = -1
  data.augment = 'cifar'  # 'cifar' (pad-4 crop + flip), 'imagenet' (random resized crop + flip), 'none'.

  # --- Model ------------------------------------------------------------------------
  config.model = model = ml_collections.ConfigDict()
  # resnet18 | resnet50 | resnet20 | resnet8 | mobilenet_v3_large | mobilenet_v3_small
  model.name = 'resnet18'
  model.stem = 'cifar'  # 'cifar' (32x32 inputs) or 'imagenet' (224x224 inputs).
  model.width = 1.0  # channel width multiplier; tests use small values.
  # Exit positions: a preset ('none', 'shallow', 'mid', 'deep') or comma-separated block
  # indices, e.g. '1,3,5'. Exits are ordered shallow to deep; the final classifier is last.
  model.exits = 'mid'
  model.exit_head = 'linear'  # 'linear' (GAP + dense) or 'sdn' (Shallow-Deep Networks head).
  model.dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16' (params stay float32).

  # --- Training ---------------------------------------------------------------------
  config.train = train = ml_collections.ConfigDict()
  train.num_epochs = 10
  train.batch_size = 128  # global, over all devices and hosts.
  train.eval_batch_size = 256  # global; scoring uses it too.
  train.optimizer = 'sgd'  # 'sgd' (Nesterov momentum) or 'adamw'.
  train.learning_rate = 0.1
  train.momentum = 0.9
  train.weight_decay = 5e-4
  train.warmup_epochs = 1.0
  train.label_smoothing = 0.0
  # Loss = CE(final) + sum_k w_k CE(exit_k). 'constant': w_k = exit_loss_weight for every
  # exit. 'sdn': the Shallow-Deep Networks ramp, w_k = exit_loss_weight * depth_k * min(1, t)
  # where depth_k = (k + 1) / (num_exits + 1) and t = epoch / num_epochs * 2.
  train.exit_loss_schedule = 'constant'
  train.exit_loss_weight = 1.0
  # How often train metrics reach the host and TensorBoard, in steps.
  train.log_every_steps = 50
  # Train steps per dispatch of the loop's jitted program (device backend); preemption is
  # checked between dispatches. 0 = auto: log_every_steps on GPU/TPU, 1 on CPU (where
  # XLA runs a step inside a loop several times slower; docs/benchmarks.md).
  train.steps_per_dispatch = 0
  # Keep what each example's latest training pass saw (every exit's confidence and
  # correctness, its loss) in a table on device, at no extra forward pass, and write it
  # after every epoch to last_pass/epoch{e}.npz (float16/bool/int16: about 10 bytes per
  # example and exit). Turn off for very large data sets; a method that reads the table
  # (forgetting, infobatch, eeprune_dynamic) keeps it anyway, unwritten.
  train.last_pass_scores = True
  train.checkpoint_every_epochs = 1
  train.keep_checkpoints = 2
  train.progress_bar = True
  # JAX's persistent compilation cache: 'default' (~/.cache/eeprune_jax/...), a directory,
  # or '' (off). A rerun or a resumed run then starts without recompiling its programs.
  train.compilation_cache_dir = 'default'

  # --- Pruning ----------------------------------------------------------------------
  config.prune = prune = ml_collections.ConfigDict()
  # 'eeprune', 'none', or a baseline: 'random', 'random_balanced', 'el2n', 'grand',
  # 'forgetting', 'final_confidence', 'infobatch', 'eeprune_dynamic' (EEPrune's rule on each
  # example's latest training pass, a fresh random share skipped per epoch): a registered
  # method (eeprune_jax/methods/).
  prune.method = 'eeprune'
  prune.mode = 'fraction'  # 'fraction' (prune exactly round(fraction * N)) or 'threshold'.
  # Defaults from docs/results.md: smaller fractions and later pruning hurt least there.
  prune.fraction = 0.3  # share of the full training set to prune, in [0, 1).
  prune.threshold = 0.9  # early-exit confidence above which an example is eligible.
  prune.exit = 0  # which early exit scores (index into the configured exits).
  prune.epoch = 5  # prune after this many epochs of full-data training (half of num_epochs).
  prune.every = 0  # if > 0, prune again every `every` epochs (the pruned set only grows).
  # Fraction mode: prune the same share of every class (each class's highest-priority
  # eligible examples first) instead of the highest priority overall. On by default: it
  # raised EEPrune's accuracy in docs/results.md. The paper's rule is False.
  prune.class_balanced = True
  # EL2N / GraNd: average the scores of this many independently initialised networks, each
  # trained to `prune.epoch` (the extra training is charged to the cost ledger).
  prune.score_seeds = 1
  prune.grand_chunk = 16  # GraNd: examples per vmapped per-example-gradient chunk.
  # InfoBatch: `fraction` is the share of below-mean-loss examples dropped each epoch; the
  # last `infobatch_anneal` of the epochs train on the full data. eeprune_dynamic: `fraction`
  # is the share of the EEPrune-eligible examples skipped each epoch; the same anneal.
  prune.infobatch_anneal = 0.125
  # cost_matched: train on the full data for this share of the schedule (num_epochs x
  # cost_fraction epochs, fractional; learning-rate schedule compressed to them). compare
  # sets it to the measured cost of the pruned run the baseline is matched with.
  prune.cost_fraction = 1.0
  # Warn (run output, summary.json, comparison report) when pruning has removed this
  # share or more of a class: the network then never trains on it again. In (0, 1];
  # 1.0 warns only for classes pruned entirely.
  prune.class_warning_share = 0.9
  # Start from a given keep mask: a bool .npy [N] over the canonical training indices (e.g.
  # a keep_mask.npy, or one `python -m eeprune_jax.whatif` wrote); '' = all kept. The run
  # trains on its kept examples from epoch 0. With prune.method='none' that is the whole
  # run; a pruning method prunes further from it at its rounds (the given pruned examples
  # stay pruned and count towards round(fraction * N)), and a per-epoch method draws from
  # the kept ones only.
  prune.mask_path = ''
  return config
