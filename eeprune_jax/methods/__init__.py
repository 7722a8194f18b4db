"""Pruning methods as plug-ins: one module per method, looked up by name.

`base.py` holds the protocol (`Method`, `Needs`, `RoundContext`) and the registry. Every
other module of this package defines one method and registers it with `@base.register`;
importing the package imports them all, so adding a method is adding a module here
(README, "Adding a pruning method"). Code outside the package asks `get(name)` and never
switches on a method's name.
"""

import importlib
import pkgutil

from eeprune_jax.methods.base import (Method, Needs, RoundContext, Scores, get, names, prune,
                                      register, unregister)

for _module in pkgutil.iter_modules(__path__):
  if _module.name != 'base':
    importlib.import_module(f'{__name__}.{_module.name}')

__all__ = ['Method', 'Needs', 'RoundContext', 'Scores', 'get', 'names', 'prune', 'register',
           'unregister']
