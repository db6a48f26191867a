"""Small file-system, randomness and environment helpers."""

import json
import os
import os.path as osp
import platform
import random
import sys
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image

from .errors import UserError


def set_random_seed(seed: int) -> None:
    """Seed Python's `random`, NumPy, torch and every CUDA device (a seed all of them take, or a UserError)."""
    from dassl.config.checks import check_value  # here: dassl.config imports this package

    check_value("SEED", seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def mkdir_if_missing(dirname: str) -> None:
    """Create `dirname` (and its parents) unless it exists."""
    os.makedirs(dirname, exist_ok=True)


def atomic_write(path: str, writer: Callable[[str], None]) -> None:
    """Write `path` all-or-nothing.

    `writer(tmp_path)` writes the full content to a temporary file in the same folder, which then
    replaces `path` in one rename. If `writer` raises, the temporary file is removed and any previous
    `path` stays intact, so a crash can never leave a truncated checkpoint or JSON file behind.
    """
    folder = osp.dirname(osp.abspath(path))
    mkdir_if_missing(folder)
    tmp_path = osp.join(folder, f".{osp.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        writer(tmp_path)
        if not osp.isfile(tmp_path):
            raise RuntimeError(f"atomic_write: the writer did not create {tmp_path} (meant for {path})")
        # Flush the data to disk before the rename so that the new name never points to lost data.
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as err:
        _remove(tmp_path)
        if err.filename is None and err.errno is not None:  # a failed write names no file: name the one written
            raise OSError(err.errno, err.strerror, path) from err
        raise
    except BaseException:
        _remove(tmp_path)
        raise


def _remove(path: str) -> None:
    if osp.lexists(path):  # a link too
        os.remove(path)


def read_json(fpath: str) -> Any:
    """Read a JSON file, with an error naming the file when it is missing or malformed."""
    if not osp.isfile(fpath):
        raise UserError(f"JSON file not found: {fpath}")
    with open(fpath) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"{fpath} is not valid JSON ({e}); delete it so that it is regenerated") from e


def write_json(obj: Any, fpath: str) -> None:
    """Write `obj` as indented JSON, atomically."""

    def writer(tmp_path: str) -> None:
        with open(tmp_path, "w") as f:
            json.dump(obj, f, indent=4, separators=(",", ": "))

    atomic_write(fpath, writer)


def _clipped_by_conversion(img: Image.Image) -> str:
    """What a conversion to 8-bit RGB would lose of `img` ("" when nothing): PIL clips 16-bit, 32-bit and float
    values to 0..255 and truncates fractions, which turns a 16-bit photo white or a 0..1 float image black."""
    if not (img.mode == "F" or img.mode.startswith("I")):  # I, I;16, I;16B, I;16L, I;16N, F
        return ""
    values = np.asarray(img)
    low, high = values.min().item(), values.max().item()
    if low < 0 or high > 255:
        return f"values from {low:g} to {high:g}, which a conversion to 8-bit RGB clips to 0..255"
    if img.mode == "F" and not np.array_equal(values, np.floor(values)):
        return f"fractional values from {low:g} to {high:g}, which a conversion to 8-bit RGB truncates"
    return ""


def read_image(path: str) -> Image.Image:
    """Open an image with PIL and convert it to RGB, as the benchmarks' readers do (Dassl's `read_image`): the
    first frame of a multi-frame file, the stored pixel grid (EXIF orientation is not applied), alpha dropped,
    palette, CMYK, YCbCr, LAB and HSV by PIL's conversion. An image whose values 8 bits cannot hold (16-bit,
    32-bit or float modes beyond 0..255) is refused, naming the file, instead of being read clipped."""
    if not osp.isfile(path):
        raise UserError(f"Image not found: {path} (check DATASET.ROOT and the dataset layout)")
    try:
        with Image.open(path) as img:
            lost = _clipped_by_conversion(img)
            if lost:
                raise UserError(f"Cannot read image {path}: it is a mode {img.mode} image with {lost}; save it as an "
                                "8-bit image (values scaled to 0..255, e.g. mode L or RGB) and rerun.")
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"Cannot read image {path}: {e}. The file is corrupt or not an image; replace it.") from e


def first_few(items: list[str], show: int = 5) -> str:
    """The first ``show`` items joined by commas, then how many more there are: "a, b, c and 4 more"."""
    listed = ", ".join(items[:show])
    return f"{listed} and {len(items) - show} more" if len(items) > show else listed


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    """List the entries of `path` whose names do not start with a dot."""
    items = [name for name in os.listdir(path) if not name.startswith(".")]
    if sort:
        items.sort()
    return items


def collect_env_info() -> str:
    """A short description of the software and hardware, printed at the top of every log."""
    import torchvision

    lines = [
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__}",
        f"torchvision: {torchvision.__version__}",
        f"NumPy: {np.__version__}",
        f"Pillow: {PIL.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA runtime: {torch.version.cuda}, cuDNN: {torch.backends.cudnn.version()}")
        for i in range(torch.cuda.device_count()):
            lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)}")
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    return "\n".join(lines)
