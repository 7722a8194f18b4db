"""The batches a pipeline's feeds give the loop's programs, read back for tests.

The loop reads data only through feeds (`Pipeline.train_feeds` / `eval_feeds`, turned into
this device's rows of a batch by `pipeline.reader.local_batch` inside its jitted programs).
These helpers run one program per feed of the same shape as `loop.Programs`'s that returns
the rows of every batch instead of training or scoring on them, so a test sees what the
programs see: global arrays [batches, B, ...] sharded along B, or (`host`) numpy rows
[batches * B, ...].
"""

import functools
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from eeprune_jax import data as data_lib
from eeprune_jax import parallel

P = jax.sharding.PartitionSpec
ROWS = P(None, parallel.BATCH_AXIS)  # [batches, B]: batch rows split over the mesh


def _program(pipe: data_lib.Pipeline, num_batches: int, train: bool) -> Any:
  """(feed, first step, epoch) -> `local_batch` of steps first.. first+num_batches-1."""
  return _compiled(pipe.reader, pipe.mesh, num_batches, train)


# One program per (reader, mesh, length, mode), as the loop keeps its programs: a reader
# holds no data, so a test reading several epochs or pipelines traces each program once.
@functools.lru_cache(maxsize=None)
def _compiled(reader: data_lib.FeedReader, mesh: jax.sharding.Mesh, num_batches: int,
              train: bool) -> Any:
  def run(feed, first, epoch):
    def body(_, i):
      return None, reader.local_batch(feed, first + i, epoch, train=train)
    return jax.lax.scan(body, None, jnp.arange(num_batches))[1]

  return parallel.data_parallel(run, mesh, in_specs=(reader.feed_specs(), P(), P()),
                                out_specs=ROWS)


def _concat(outputs: list[dict[str, jax.Array]]) -> dict[str, jax.Array]:
  if len(outputs) == 1:
    return outputs[0]
  return {k: jnp.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def train_batches(pipe: data_lib.Pipeline, epoch: int, keep: np.ndarray | None
                  ) -> dict[str, jax.Array]:
  """Every batch of the epoch, augmented, as the train program reads it: [steps, B, ...]."""
  steps = pipe.steps_per_epoch(keep)
  per_feed = min(steps, pipe.max_steps_per_feed())
  outputs, done = [], 0
  for feed in pipe.train_feeds(epoch, keep, 0, per_feed):
    n = min(per_feed, steps - done)
    outputs.append(_program(pipe, n, True)(feed, np.int32(done), np.int32(epoch)))
    done += n
  assert done == steps, (done, steps)
  return _concat(outputs)


def eval_batches(pipe: data_lib.Pipeline, split: str) -> dict[str, jax.Array]:
  """Every batch of an eval pass over `split` (padded), as the eval and per-example
  programs read them: [batches, eval B, ...]."""
  return _concat([_program(pipe, n, False)(feed, np.int32(0), np.int32(0))
                  for feed, n in pipe.eval_feeds(split)])


def host(batches: dict[str, jax.Array]) -> dict[str, np.ndarray]:
  """Numpy rows [batches * B, ...], batch after batch."""
  return {k: v.reshape(-1, *v.shape[2:])
          for k, v in parallel.global_to_host(batches).items()}


def each(batches: dict[str, jax.Array]) -> Iterator[dict[str, jax.Array]]:
  """Global batch after batch, [B, ...] sharded along the batch axis, as a step takes it."""
  sharding = parallel.batch_sharding(next(iter(batches.values())).sharding.mesh)
  for i in range(next(iter(batches.values())).shape[0]):
    yield {k: jax.device_put(v[i], sharding) for k, v in batches.items()}
