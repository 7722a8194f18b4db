"""`none`: the full-data baseline. It never prunes."""

from eeprune_jax.methods import base


@base.register
class NoPruning(base.Method):
  """Trains on every example: no pruning round, no keep mask."""
  name = 'none'
  prunes = False
