"""Training on several GPUs: one process per GPU, started by `torchrun --nproc_per_node=N train.py ...`.

Every process runs the whole of train.py. With one process (plain `python train.py`, or torchrun with
N = 1) each function here is a no-op and training is exactly the single-process one.

How the processes cooperate, and why:

* Gradients. After every backward pass the gradient of each trainable parameter is averaged over the
  processes by a hook on the parameter (`prepare_training`), so every optimiser step applies the same
  update everywhere and the weights never drift apart. This is the averaging DistributedDataParallel
  performs, without wrapping the model: the trainers call custom methods (`model.loss`,
  `model.image_features`, a cached text encoder) that a DDP wrapper would bypass, and the hooks fire
  for every backward path there is (plain, amp's scaled loss, the attribute search's two steps).
  Because the averaged gradient is already there when a GradScaler checks for inf/NaN, all processes
  skip or take a step together.
* Data. Each process takes DATALOADER.TRAIN_X.BATCH_SIZE images per step, so a step sees N times as
  many. Rank 0 draws the epoch's order with the configured sampler, exactly as a single process would,
  and sends it to the others; step k then gives rank r the r-th slice of the k-th global batch
  (`RankShardSampler`). Every process agrees on the order without a shared seed, and N processes with
  batch b train on the batches of one process with batch N * b (for as long as rank 0's random stream
  advances like that process's: always when loader workers do the augmentation).
* Evaluation runs on rank 0 alone (the result lines are printed once, as usual); the others wait and
  receive the accuracy (`broadcast_object`).
* Output. Only rank 0 writes log.txt, checkpoints and tensorboard files; the standard output of the
  other ranks is discarded (their errors still reach stderr).
* Datasets are built by rank 0 first (`main_process_first`), so split and few-shot caches are written
  once and the other ranks read them.
* Random streams. Checkpoints hold rank 0's streams and only rank 0 restores them. At the start of
  training the other ranks reseed from their own state plus their rank, so their augmentations differ
  from rank 0's; a resumed run therefore repeats an uninterrupted one exactly only where augmentation
  is deterministic.
* Stopping. A stop request (SIGINT/SIGTERM) that reaches any process is shared at every batch, so
  all processes stop after the same batch; rank 0 saves the resumable checkpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Optional, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from dassl.utils import set_random_seed
from dassl.utils.errors import UserError

T = TypeVar("T")

# Rank 0 alone builds dataset caches and evaluates while the others wait in a collective, so the
# timeout must cover a first pass over a large dataset (the defaults are 10 min for NCCL).
TIMEOUT = timedelta(minutes=60)

# id -> parameter whose gradient is already averaged: training twice in one process must not hook twice.
_averaged: dict[int, weakref.ref] = {}


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(use_cuda: bool) -> bool:
    """Join the process group when torchrun started several processes; return whether distributed.

    Uses NCCL with one GPU per process (LOCAL_RANK) when CUDA is used, gloo on the CPU. The ranks other
    than 0 stop printing to stdout.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 asks for distributed training, but this PyTorch build has no "
                        "torch.distributed; run a single process (python train.py ...)")
    device_id = None
    if use_cuda and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"Process LOCAL_RANK={local_rank} has no GPU: this machine has {torch.cuda.device_count()}. "
                "Start at most one process per GPU (torchrun --nproc_per_node=<number of GPUs>)."
            )
        torch.cuda.set_device(local_rank)
        device_id = torch.device("cuda", local_rank)
    dist.init_process_group("nccl" if device_id is not None else "gloo", timeout=TIMEOUT, device_id=device_id)
    atexit.register(teardown)
    if not is_main_process():
        sys.stdout = open(os.devnull, "w")  # kept open for the life of the process
    return True


def report_failure(line: str) -> None:
    """Give torchrun a failing process's one error line: written to the reply file torchrun names for each process
    (TORCHELASTIC_ERROR_FILE, in the format of torch's own error handler), it becomes the failure's message in
    torchrun's summary instead of "To enable traceback see ...". Nothing happens outside torchrun."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as file:
            json.dump({"message": {"message": line, "extraInfo": {"timestamp": str(int(time.time()))}}}, file)
    except OSError:
        pass  # the summary then lacks the line, which the process prints anyway: never hide it behind this error


def teardown() -> None:
    """Leave the process group (registered to run at exit)."""
    if is_distributed():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (writing any cache), then the other ranks run it (reading that cache)."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (a picklable object; the other ranks' argument is ignored)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree_on_signal(signum: Optional[int]) -> Optional[int]:
    """The stop signal any rank has received (None when none has); every rank must call this at the same point."""
    if not is_distributed():
        return signum
    flag = torch.tensor([signum or 0], device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def _average_grad(param: torch.Tensor) -> None:
    # Divide before summing, as DDP does, so that fp16 gradients do not overflow in the sum.
    param.grad.div_(get_world_size())
    dist.all_reduce(param.grad)


def prepare_training(modules: Iterable[Optional[nn.Module]]) -> None:
    """Make the processes train as one: same starting weights, averaged gradients, distinct random streams.

    Copies rank 0's trainable parameters to every rank, hooks them so that each backward pass leaves the
    average gradient over the ranks, and reseeds ranks > 0 from their current state plus their rank.
    """
    if not is_distributed():
        return
    params = {id(p): p for m in modules if m is not None for p in m.parameters() if p.requires_grad}
    with torch.no_grad():
        for param in params.values():
            dist.broadcast(param, src=0)
    for key, param in params.items():
        hooked = _averaged.get(key)
        if hooked is None or hooked() is not param:
            param.register_post_accumulate_grad_hook(_average_grad)
            _averaged[key] = weakref.ref(param)
    rank, world_size = get_rank(), get_world_size()
    if rank > 0:
        set_random_seed(int(torch.randint(0, 2**31 - world_size, ())) + rank)
    print(f"Distributed training on {world_size} processes ({dist.get_backend()}): every step averages the "
          f"gradients of {world_size} batches")


def _steps(n: int, batch_size: int, world_size: int) -> tuple[int, int]:
    """(steps, images per rank and step) for an epoch of n images."""
    global_batch = batch_size * world_size
    if n >= global_batch:
        return n // global_batch, batch_size
    return 1, n // world_size


def rank_slice(order: Sequence[int], batch_size: int, rank: int, world_size: int) -> list[int]:
    """The images of `order` that rank `rank` trains on, in order.

    Global batch k holds positions [k * N * b, (k + 1) * N * b) of `order` (N ranks, b = batch_size) and
    rank r takes the r-th slice of b of it; an incomplete last global batch is dropped. With fewer images
    than one global batch there is a single step in which every rank takes len(order) // N images.
    """
    steps, per_step = _steps(len(order), batch_size, world_size)
    stride = per_step * world_size
    return [i for step in range(steps) for i in order[step * stride + rank * per_step:][:per_step]]


class RankShardSampler(Sampler):
    """This rank's slice of every global batch (`rank_slice`) of the order that `sampler` draws on rank 0."""

    def __init__(self, sampler: Sampler, batch_size: int) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.rank, self.world_size = get_rank(), get_world_size()
        if len(sampler) < self.world_size:
            raise UserError(
                f"{len(sampler)} training images cannot be shared by {self.world_size} processes; "
                "use fewer processes (torchrun --nproc_per_node) or more shots"
            )

    def __len__(self) -> int:
        steps, per_step = _steps(len(self.sampler), self.batch_size, self.world_size)
        return steps * per_step

    def __iter__(self) -> Iterator[int]:
        order = broadcast_object(list(self.sampler) if self.rank == 0 else None)
        return iter(rank_slice(order, self.batch_size, self.rank, self.world_size))
