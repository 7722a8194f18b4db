"""What stays fixed through a training run: `RunContext`, built once from the config.

Config, mesh, data pipeline, model, jitted programs, pruning method, paths, checkpoint
manager, writers and the preemption check. What changes epoch by epoch is
`run_state.Carry`.
"""

import dataclasses
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from eeprune_jax import checkpointing
from eeprune_jax import config_checks
from eeprune_jax import data as data_lib
from eeprune_jax import loop
from eeprune_jax import methods
from eeprune_jax import models
from eeprune_jax import parallel
from eeprune_jax import run_writers
from eeprune_jax import save_watch
from eeprune_jax import steps as steps_lib
from eeprune_jax import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class RunContext:
  """The fixed pieces of one run."""
  config: ml_collections.ConfigDict
  workdir: str
  paths: workdir_lib.RunDir
  method: methods.Method
  is_writer: bool  # process 0: the one that writes files
  mesh: jax.sharding.Mesh
  pipeline: data_lib.Pipeline
  model: Any  # the flax module
  num_exits: int
  exit_macs: list[int]
  forward_macs: int
  programs: loop.Programs
  manager: ocp.CheckpointManager
  saves: save_watch.SaveWatch
  writers: run_writers.RunWriters
  preemption: loop.Preemption

  @classmethod
  def build(cls, config: ml_collections.ConfigDict, workdir: str) -> 'RunContext':
    """Builds every piece, checks the config against the data, and claims the workdir's
    config (a workdir of another config is refused before any compute)."""
    is_writer = jax.process_index() == 0
    method = methods.get(config.prune.method)
    mesh = parallel.make_mesh()
    pipeline = data_lib.create_pipeline(
        config.data, batch_size=config.train.batch_size,
        eval_batch_size=config.train.eval_batch_size, mesh=mesh, seed=config.seed,
        workdir=workdir)
    model = models.build_model(config.model, pipeline.info.num_classes,
                               axis_name=parallel.BATCH_AXIS)
    config_checks.validate_with_data(config, len(pipeline.train_labels))
    manager = checkpointing.make_manager(workdir, config.train.keep_checkpoints)
    workdir_lib.check_or_write_config(workdir, config, is_writer,
                                      has_checkpoint=manager.latest_step() is not None)
    programs = loop.Programs(
        pipeline, mesh, config.train, weighted=method.needs.epoch_mask,
        table=config.train.last_pass_scores or method.needs.example_table,
        schedule_epochs=method.schedule_epochs(config))
    num_exits = len(models.exit_blocks(config.model))
    paths = workdir_lib.RunDir(workdir)
    return cls(
        config=config, workdir=workdir, paths=paths, method=method, is_writer=is_writer,
        mesh=mesh, pipeline=pipeline, model=model, num_exits=num_exits,
        exit_macs=models.count_macs(model, pipeline.info.image_shape),
        forward_macs=models.forward_macs(model, pipeline.info.image_shape),
        programs=programs, manager=manager, saves=save_watch.SaveWatch(manager, workdir),
        writers=run_writers.RunWriters(paths, is_writer=is_writer, num_exits=num_exits,
                                       progress_bar=config.train.progress_bar),
        preemption=loop.Preemption())

  @property
  def info(self) -> data_lib.DatasetInfo:
    """The data set's sizes, classes and image shape."""
    return self.pipeline.info

  @property
  def num_train(self) -> int:
    """Training examples N."""
    return len(self.pipeline.train_labels)

  @property
  def num_outputs(self) -> int:
    """Early exits plus the final one."""
    return self.num_exits + 1

  def init_state(self, seed: int) -> steps_lib.TrainState:
    """A freshly initialised, replicated train state."""
    return steps_lib.create_train_state(self.model, steps_lib.make_optimizer(self.config.train),
                                        self.info.image_shape, seed, self.mesh)

  def exit_weights(self, epoch: int) -> Any:
    """Each early exit's loss weight in `epoch`."""
    return steps_lib.exit_loss_weights(self.config.train, self.num_exits, epoch)
