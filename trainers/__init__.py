"""Importing this package registers every method module in it with dassl's TRAINER_REGISTRY, then the original's
trainer names (trainers/original.py)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from trainers.original import register_aliases  # noqa: E402

register_aliases()
