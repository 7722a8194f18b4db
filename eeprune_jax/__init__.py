"""EEPrune in JAX: prune easy training examples with early-exit networks."""

__version__ = "0.1.0"
