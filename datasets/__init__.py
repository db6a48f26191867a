"""Dataset readers; importing the package registers every reader module in it with ``DATASET_REGISTRY``.

What the project knows about each dataset beyond reading it (templates, attributes, protocol settings) is in
``datasets/catalog.py``.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
