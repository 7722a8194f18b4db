"""Trains with EEPrune: `python -m eeprune_jax.main --config=configs/demo.py --workdir=DIR`.

Config fields can be overridden on the command line, e.g. `--config.prune.fraction=0.5`.
Running again with the same --workdir resumes the run stored there.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from eeprune_jax import train

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing this module is safe)."""
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory (or gs:// URL) for checkpoints, masks, scores.')
  flags.DEFINE_bool('multihost', False,
                    'Call jax.distributed.initialize() first (every host of a TPU pod, or each '
                    'process of a multi-process GPU/CPU job).')
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (not needed on TPU).')
  flags.DEFINE_integer('num_processes', None, 'Number of processes (not needed on TPU).')
  flags.DEFINE_integer('process_id', None, 'This process index (not needed on TPU).')
  flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    # Orbax and TFDS log every save and read at INFO; the progress bar and one line per
    # epoch are the console output. Pass -v 0 for INFO logs.
    logging.set_verbosity(logging.WARNING)
  if FLAGS.multihost:
    # Cross-process collectives on the CPU backend (tests, CPU clusters); TPU and GPU
    # backends ignore this.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info('JAX process %d of %d, %d local / %d global devices (%s).', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  define_flags()
  app.run(main)
