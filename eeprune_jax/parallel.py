"""The 1-D data-parallel device mesh and how host data becomes global arrays on it."""

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXIS = 'batch'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh, axis name 'batch', over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (BATCH_AXIS,), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh (data parallel)."""
  return NamedSharding(mesh, P(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same value on every device."""
  return NamedSharding(mesh, P())


def local_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch (global batches split evenly over processes)."""
  # config_checks validates the batch sizes against the device count.
  assert global_batch_size % jax.device_count() == 0, (global_batch_size, jax.device_count())
  return global_batch_size // jax.process_count()


def put(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from a host value that every process holds in full.

  Unlike `jax.device_put`, this also works when the mesh spans several processes. It is
  a deliberate upload, so it passes `jax.transfer_guard('disallow')`, which the tests
  put around an epoch to catch any other (implicit) transfer.
  """
  x = np.asarray(x)
  with jax.transfer_guard_host_to_device('allow'):
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Puts host values (the same on every process) on every device of the mesh."""
  return jax.tree.map(lambda x: put(x, replicated(mesh)), tree)


def host_to_global(mesh: Mesh, local: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
  """Assembles each host's local rows into global arrays sharded along 'batch'.

  Every process passes its own rows (local batch = global batch / process_count); on one
  process this is a plain sharded `device_put`.
  """
  sharding = batch_sharding(mesh)
  with jax.transfer_guard_host_to_device('allow'):  # a deliberate upload, as `put`
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}


def global_to_host(tree: Any) -> Any:
  """Fetches (possibly multi-host) global arrays to numpy on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)


def data_parallel(fn: Callable[..., Any], mesh: Mesh, in_specs: Any, out_specs: Any,
                  **jit_kwargs) -> Callable[..., Any]:
  """`jax.jit(jax.shard_map(fn))` over the 1-D batch mesh: `fn` sees one device's shard.

  Inside `fn`, reduce over devices with `jax.lax.psum/pmean(x, BATCH_AXIS)`.
  """
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs),
                 **jit_kwargs)
