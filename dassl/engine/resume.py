"""What exact resumption needs beyond weights: the random-number streams and a graceful-stop signal.

RNG states are stored as tensors, ints and lists only, so checkpoints stay loadable with
torch.load(weights_only=True).
"""

import os
import random
import signal
import threading
from typing import Any, Optional

import numpy as np
import torch

from . import distributed


def capture_rng_state() -> dict[str, Any]:
    """The current state of Python's `random`, NumPy's global RNG, torch's CPU RNG and all CUDA RNGs."""
    version, mt_state, gauss_next = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    return {
        "python": {"version": version, "state": list(mt_state), "gauss_next": gauss_next},
        "numpy": {
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of capture_rng_state. CUDA states are restored only on a machine with as many GPUs.

    In a multi-process run the saved states are rank 0's: only rank 0 takes them up, the other ranks keep
    their own streams (see dassl/engine/distributed.py).
    """
    if not distributed.is_main_process():
        return
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
        torch.cuda.set_rng_state_all(cuda_states)


class StopSignal:
    """While active, SIGINT/SIGTERM only record a stop request, which the trainer honours after the
    current batch (saving a checkpoint first). A second signal aborts at once with KeyboardInterrupt.

    Handlers are installed only from the main thread and act only in the installing process, so
    forked data-loader workers ignore a Ctrl+C that the terminal sends to the whole process group.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            return
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        # os.write, not print: a handler may run in the middle of another write to sys.stdout.
        os.write(2, b"\nStop requested: finishing the current batch, then saving a checkpoint "
                    b"(signal again to abort without saving)\n")

    def __enter__(self) -> "StopSignal":
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
