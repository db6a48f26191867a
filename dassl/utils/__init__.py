from .errors import UserError
from .logger import close_logger, setup_logger
from .meters import AverageMeter, MetricMeter
from .registry import Registry, check_availability
from .tools import (
    atomic_write,
    collect_env_info,
    first_few,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    write_json,
)
from .torchtools import load_checkpoint, load_pretrained_weights, save_checkpoint

__all__ = [
    "AverageMeter",
    "MetricMeter",
    "Registry",
    "atomic_write",
    "check_availability",
    "close_logger",
    "collect_env_info",
    "first_few",
    "listdir_nohidden",
    "load_checkpoint",
    "load_pretrained_weights",
    "mkdir_if_missing",
    "read_image",
    "read_json",
    "save_checkpoint",
    "set_random_seed",
    "setup_logger",
    "UserError",
    "write_json",
]
