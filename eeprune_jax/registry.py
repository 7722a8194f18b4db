"""Plug-ins by name (scenic-style registries): pruning methods and data sources.

A plug-in module registers one instance of its class under the name a config field
selects; the rest of the program asks the registry, never switches on names.
"""

from typing import Generic, TypeVar

T = TypeVar('T')


class Registry(Generic[T]):
  """Instances of plug-in classes by name; `field` is the config field that picks one."""

  def __init__(self, field: str):
    self._field = field
    self._items: dict[str, T] = {}

  def add(self, name: str, cls: type[T]) -> None:
    """Registers an instance of `cls` as `name` (again, for the same class: a reload)."""
    known = self._items.get(name)
    if known is not None and type(known).__qualname__ != cls.__qualname__:
      raise ValueError(f'{self._field} {name!r} is already registered by '
                       f'{type(known).__module__}.{type(known).__qualname__}.')
    self._items[name] = cls()

  def remove(self, name: str) -> None:
    """Forgets `name` (tests that register a toy plug-in)."""
    self._items.pop(name, None)

  def names(self) -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(self._items)

  def get(self, name: str) -> T:
    """The instance registered as `name`; a ValueError listing the known names otherwise."""
    if name not in self._items:
      raise ValueError(f'unknown {self._field}={name!r}; registered: '
                       f'{", ".join(self._items)}.')
    return self._items[name]
