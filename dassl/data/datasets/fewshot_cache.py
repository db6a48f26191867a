"""Cache of the sampled few-shot splits (``<dataset_dir>/split_fewshot/shot_{K}-seed_{S}.json``).

The JSON form stores ``[impath, label, classname]`` (plus the domain when it is not 0) with paths relative to
the dataset folder (by default the cache file's grandparent), so the cache survives a moved data root. Caches
written by the original code are pickles of Datum with the same stem; they are read through an unpickler that can
build nothing but Datum records and plain containers, because unpickling an arbitrary file can run arbitrary code.
"""

from __future__ import annotations

import builtins
import os
import pickle

from dassl.utils import read_json, write_json
from dassl.utils.errors import UserError

from .base_dataset import Datum, datums_from_entries

_DATUM_PATH = ("dassl.data.datasets.base_dataset", "Datum")
_SAFE_BUILTINS = frozenset({"dict", "list", "str", "int", "tuple"})
# What unpickling a truncated or overwritten file can raise (cut and bit-flipped caches show most of these).
_DAMAGED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError)
# The fix for a cache that cannot be used; nothing is lost, as the same seed draws the same images again.
_DELETE = "delete it and it is made again (a few-shot split is drawn again from the same seed)"


def _dataset_dir(json_path: str) -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(json_path)))


def _to_entry(item: Datum, root: str) -> list:
    impath = os.path.abspath(item.impath)
    rel = os.path.relpath(impath, root)
    # Images outside the dataset folder keep their absolute path (os.path.join gives it back unchanged).
    entry = [impath if rel.split(os.sep)[0] == os.pardir else rel, item.label, item.classname]
    return entry + [item.domain] if item.domain else entry


class _DatumUnpickler(pickle.Unpickler):
    """Resolves only Datum and a few builtin containers; any other global is refused before it is imported."""

    def __init__(self, file, path: str) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) == _DATUM_PATH:
            return Datum
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        raise UserError(
            f"Refusing to load {self.path}: it references {module}.{name}, which a few-shot cache never contains. "
            f"Delete the file (the few-shot split is then sampled again) or replace it with a trusted copy."
        )


def _load_pickle(pkl_path: str) -> dict[str, list[Datum]]:
    with open(pkl_path, "rb") as f:
        try:
            data = _DatumUnpickler(f, pkl_path).load()
        except _DAMAGED as err:
            raise UserError(f"Few-shot cache {pkl_path} is damaged ({type(err).__name__}: {err}), e.g. cut short "
                            f"by an interrupted copy; {_DELETE}.") from err
    well_formed = isinstance(data, dict) and all(
        isinstance(key, str) and isinstance(items, list) and all(isinstance(item, Datum) for item in items)
        for key, items in data.items()
    )
    if not well_formed:
        raise UserError(f"{pkl_path} is not a few-shot cache (expected a dict of Datum lists); delete it.")
    return data


def _load_json(json_path: str, root: str) -> dict[str, list[Datum]]:
    data = read_json(json_path)
    try:
        if not isinstance(data, dict):
            raise ValueError(f"it holds a {type(data).__name__}, not an object of split lists")
        return {split: datums_from_entries(items, root, split) for split, items in data.items()}
    except ValueError as err:
        raise UserError(f"Few-shot cache {json_path}: {err}; {_DELETE}.") from err


def cache_file(json_path: str) -> str | None:
    """The cache file that stands for ``json_path``: itself, else the original's ``.pkl`` beside it, else None."""
    pkl_path = os.path.splitext(json_path)[0] + ".pkl"
    return next((path for path in (json_path, pkl_path) if os.path.isfile(path)), None)


def load_fewshot_cache(json_path: str, root: str | None = None) -> dict[str, list[Datum]] | None:
    """The cached few-shot splits at ``json_path`` (or its ``.pkl``), None when neither exists.

    JSON paths are joined onto ``root``, by default the cache file's grandparent (``<dataset>/split_fewshot/``).
    """
    path = cache_file(json_path)
    if path is None:
        return None
    print(f"Loading preprocessed few-shot data from {path}")
    if path != json_path:
        return _load_pickle(path)
    return _load_json(path, root or _dataset_dir(json_path))


def save_fewshot_cache(json_path: str, data: dict[str, list[Datum]], root: str | None = None) -> None:
    """Write ``data`` (split name -> Datum list) as the JSON cache, atomically; paths relative to ``root`` as above."""
    root = root or _dataset_dir(json_path)
    payload = {split: [_to_entry(item, root) for item in items] for split, items in data.items()}
    write_json(payload, json_path)
    print(f"Saved preprocessed few-shot data to {json_path}")
