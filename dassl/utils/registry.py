"""Name -> object registries (trainers, datasets, evaluators) with helpful lookup errors."""

import difflib
from collections.abc import Iterable
from typing import Any, Optional

from .errors import UserError


class UnknownNameError(UserError, KeyError):
    """A name that is not available (also a KeyError, as in Dassl). Printed without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0])


def _unknown_message(kind: str, requested: str, available: Iterable[str]) -> str:
    available = sorted(available)
    message = f'Unknown {kind} "{requested}".'
    close = difflib.get_close_matches(requested, available, n=3, cutoff=0.5)
    if not close:
        close = [name for name in available if name.lower() == requested.lower()]
    if close:
        message += " Did you mean " + " or ".join(f'"{name}"' for name in close) + "?"
    return message + " Available: " + (", ".join(available) if available else "(none registered)")


def check_availability(requested: str, available: Iterable[str], kind: str = "name") -> None:
    """Raise UnknownNameError (with close-name suggestions) unless `requested` is in `available`."""
    available = list(available)
    if requested not in available:
        raise UnknownNameError(_unknown_message(kind, requested, available))


class Registry:
    """Map names to classes or functions.

    Register with a decorator (``@REGISTRY.register()``), a call (``REGISTRY.register(cls)``), or under an
    extra alias (``REGISTRY.register(cls, name="Alias")``).
    """

    def __init__(self, name: str):
        self._name = name
        self._obj_map: dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool) -> None:
        if name in self._obj_map and not force and self._obj_map[name] is not obj:
            raise KeyError(f'"{name}" is already registered in the {self._name} registry; use force=True to replace it')
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False, name: Optional[str] = None):
        if obj is None:

            def decorator(fn_or_class):
                self._do_register(name or fn_or_class.__name__, fn_or_class, force)
                return fn_or_class

            return decorator
        self._do_register(name or obj.__name__, obj, force)
        return obj

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            raise UnknownNameError(_unknown_message(f"{self._name.lower()} name", name, self._obj_map))
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        return list(self._obj_map)

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __len__(self) -> int:
        return len(self._obj_map)
