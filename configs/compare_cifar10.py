"""EEPrune against the baselines on CIFAR-10, on the budget of `configs/cifar10_small.py`.

  python -m eeprune_jax.compare --config=configs/compare_cifar10.py --workdir=runs/compare_c10 \
      --config.data.data_dir=../shared/data/tfds

Every method shares the half-width ResNet-20 (CIFAR form) with a mid exit, the 8-epoch
schedule, batch 128 and the data order; pruning happens after epoch 2. Only the
`eeprune_shallow`/`eeprune_mid`/`eeprune_deep` runs move the exit. GraNd is left out of
the default method list: its per-example gradient norms are costly on a CPU; add it with
`--config.compare.methods=...,grand`. More seeds or fractions:
`--config.compare.seeds=0,1,2 --config.compare.fractions=0.3,0.5,0.7`.

Expected runtime: about 10-15 minutes per run on a 2-core CPU (10 runs with the defaults,
plus the training-less frontier's 4 runs per seed, which together cost 2.8 full runs: about
2.5-3 hours per seed); seconds per epoch on a GPU. `--config.compare.frontier=''` leaves
the frontier out. Rerunning with the same --workdir
skips finished runs and resumes an unfinished one; report.md is rewritten after every run.
"""

import pathlib
import runpy

import ml_collections

_SMALL = pathlib.Path(__file__).resolve().parent / 'cifar10_small.py'


def get_config() -> ml_collections.ConfigDict:
  """configs/cifar10_small.py plus the `compare` section."""
  config = runpy.run_path(str(_SMALL))['get_config']()
  config.compare = compare = ml_collections.ConfigDict()
  # Comma-separated method names (see eeprune_jax.compare.entries).
  compare.methods = ('none,random,random_balanced,el2n,forgetting,final_confidence,'
                     'eeprune_shallow,eeprune_mid,eeprune_deep,infobatch')
  compare.fractions = '0.5'  # comma-separated prune.fraction values; `none` runs at 0.
  compare.seeds = '0'  # comma-separated config.seed values.
  # cost_matched (full data, fewer epochs) matches the measured cost of this method's runs;
  # '' = the first method listed that prunes in rounds.
  compare.cost_reference = ''
  # The training-less frontier: full data on these shares of the schedule, every seed;
  # report.md reads every method against it at the method's own cost. '' = none.
  compare.frontier = '0.4,0.6,0.8,1.0'
  compare.plot_fraction = -1.0  # fraction of the per-class and image plots; < 0: the largest.
  # Runs at once, each its own process (1: one after another, in this process); each
  # gets memory_fraction of the accelerator's memory (0: 0.9 / parallel).
  compare.parallel = 1
  compare.memory_fraction = 0.0
  compare.progress_every_s = 30.0  # how often concurrent runs' status line is printed
  return config
