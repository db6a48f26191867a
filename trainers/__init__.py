"""Importing this package registers every trainer module in it with dassl's TRAINER_REGISTRY."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
