"""EEPrune in JAX: prune easy training examples with early-exit networks."""

import time as _time

__version__ = "0.1.0"
# When the package was first imported (with `python -m eeprune_jax.main`, just after the
# interpreter started): the cost ledger's 'startup' phase runs from here to the first
# train dispatch.
IMPORT_TIME = _time.time()
