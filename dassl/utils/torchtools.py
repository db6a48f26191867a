"""Checkpoint saving and loading (Dassl file layout, atomic writes, safe loading)."""

import io
import os.path as osp
import pickle
import shutil
import types
from collections import OrderedDict, defaultdict
from typing import Any

import torch
from torch import nn

from .errors import UserError
from .tools import atomic_write, mkdir_if_missing


def save_checkpoint(
    state: dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
    announce: bool = True,
) -> str:
    """Save `state` to `save_dir/model.pth.tar-{state["epoch"]}` (or `save_dir/model_name`).

    Also records the file's basename in `save_dir/checkpoint` (read on resume) and, when `is_best`,
    copies the file to `model-best.pth.tar`. Every file is written atomically, and the `checkpoint`
    pointer only after the file it names is complete. `announce` prints Dassl's "Checkpoint saved to"
    line. Returns the path of the saved file.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys and "state_dict" in state:
        # Checkpoints never depend on whether the model was wrapped in DataParallel.
        state = dict(state)
        state["state_dict"] = OrderedDict(
            (key[len("module.") :] if key.startswith("module.") else key, value)
            for key, value in state["state_dict"].items()
        )
    fpath = osp.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    # Serialised in memory first, so that a full disk is an OSError naming the file (torch's own writer reports it
    # as an unrelated zip error); checkpoints of prompts are small.
    buffer = io.BytesIO()
    torch.save(state, buffer)

    def write_bytes(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())

    atomic_write(fpath, write_bytes)
    if announce:
        print(f"Checkpoint saved to {fpath}")

    def write_pointer(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(osp.basename(fpath) + "\n")

    atomic_write(osp.join(save_dir, "checkpoint"), write_pointer)
    if is_best:
        best_fpath = osp.join(save_dir, "model-best.pth.tar")
        atomic_write(best_fpath, lambda tmp: shutil.copyfile(fpath, tmp))
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


class _InertObject:
    """Stands in for an optimiser or scheduler object pickled inside an old Dassl checkpoint.

    Old Dassl warmup schedulers stored their successor scheduler (and with it the optimiser) as a
    Python object. Such entries are kept as plain attribute bags; none of their code is ever run.
    """

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


# Globals a plain checkpoint may reference: containers and torch's tensor rebuild functions.
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "set"): set,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}
# Classes from these packages (optimisers, LR schedulers) are replaced by _InertObject.
_INERT_PACKAGES = ("torch.optim", "dassl.optim")


class _LegacyUnpickler(pickle.Unpickler):
    """An allowlist unpickler for old Dassl checkpoints; anything outside the allowlist is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol-2 pickles use the Python 2 name
            module = "builtins"
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.startswith(_INERT_PACKAGES):
            return _InertObject
        raise pickle.UnpicklingError(f"the file references {module}.{name}, which is not allowed")


_legacy_pickle = types.ModuleType("dassl_legacy_pickle")
_legacy_pickle.Unpickler = _LegacyUnpickler
_legacy_pickle.load = lambda f, **kwargs: _LegacyUnpickler(f, **kwargs).load()


def load_checkpoint(fpath: str) -> Any:
    """Load a checkpoint onto the CPU without executing code from the file.

    Files are read with `torch.load(weights_only=True)`. Old Dassl checkpoints that embed a scheduler
    object are read with an allowlist unpickler that keeps such objects as inert data. A file that
    needs anything else is refused with an error that says so; it is never unpickled unsafely.
    """
    if not fpath:
        raise UserError("load_checkpoint: no checkpoint path given")
    if not osp.isfile(fpath):
        raise UserError(f'No checkpoint found at "{fpath}"')
    try:
        return torch.load(fpath, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # it references Python objects: try the allowlist below
    except Exception as e:
        raise UserError(f'Cannot read checkpoint "{fpath}" ({type(e).__name__}: {e}); the file is truncated '
                        "or not a PyTorch file. Re-create or re-download it.") from e
    try:
        # Safe despite weights_only=False: every global goes through _LegacyUnpickler's allowlist.
        return torch.load(fpath, map_location="cpu", weights_only=False, pickle_module=_legacy_pickle)
    except pickle.UnpicklingError as e:
        raise UserError(
            f'Refusing to load "{fpath}": {e}. Loading it would require unpickling arbitrary Python objects, '
            "which can execute code. If you trust the file, re-save it with tensors only, e.g. "
            '{"state_dict": model.state_dict(), "epoch": N}.'
        ) from e


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Copy the weights whose names and shapes match `model` from a checkpoint; report the rest."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for key, value in state_dict.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key in model_dict and torch.is_tensor(value) and model_dict[key].shape == value.shape:
            matched[key] = value
        else:
            discarded.append(key)
    if not matched:
        raise UserError(
            f'No weight in "{weight_path}" matches the model by name and shape; check MODEL.INIT_WEIGHTS '
            f"(first checkpoint keys: {list(state_dict)[:5]}, first model keys: {list(model_dict)[:5]})"
        )
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    print(f'Successfully loaded pretrained weights from "{weight_path}"')
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")
