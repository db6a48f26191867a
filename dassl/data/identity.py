"""Which data a run read, as checksums cheap to take for any dataset size: part of what a run is.

Settings and weights alone do not decide a run's numbers: the same command on an image folder whose classes were
replaced, or on another folder of images, measures something else. A dataset reader declares what decides the
lists of images it gives, as `data_identity(cfg)` (a classmethod, so that the run scripts can take it without
reading the data), in two parts:

- "split": what every seed of an experiment shares: the split file it read (its SHA-256), and, where the split is
  made from the folders (on every run, or once for a folder of the user's own), the folder's listing (the names
  and sizes of its files);
- "shots": what each seed draws: the few-shot file it read or wrote.

Paths are relative to DATASET.ROOT, so the same data under another root has the same identity. The images' bytes
are not hashed (that would read the whole dataset); a file replaced by one of the same name and size goes
unnoticed. A reader that declares nothing gives None, and its runs are told apart by their settings alone.
"""

from __future__ import annotations

import hashlib
import os

from yacs.config import CfgNode

from dassl.data.datasets import DATASET_REGISTRY

MISSING = "missing"  # the checksum of a file or folder that is not there


def dataset_root(cfg: CfgNode) -> str:
    return os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))


def relative(path: str, root: str) -> str:
    """`path` as named in an identity: relative to DATASET.ROOT when inside it, else absolute."""
    rel = os.path.relpath(os.path.abspath(path), root)
    return os.path.abspath(path) if rel.split(os.sep)[0] == os.pardir else rel


def file_checksum(path: str) -> str:
    """SHA-256 of a file's bytes, MISSING when it is not there."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return MISSING
    return digest.hexdigest()


def listing_name(folder: str, root: str) -> str:
    """How an identity names the listing of `folder`."""
    rel = relative(folder, root)
    return "files in DATASET.ROOT" if rel == os.curdir else f"files in {rel}"


def listing_checksum(folder: str, skip: tuple[str, ...] = ()) -> str:
    """SHA-256 of the relative path and size of every file below `folder` (hidden ones and the top-level entries
    named in `skip` aside), in sorted order: what a split made from the folder depends on, without reading the
    images. Linked folders are followed, as the readers list them; a link to nothing counts as such (the reader
    names it when it opens the image)."""
    if not os.path.isdir(folder):
        return MISSING
    entries, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back to a folder listed already
            dirnames[:] = []
            continue
        seen.add(real)
        top = dirpath == folder
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (top and d in skip))
        for name in sorted(f for f in filenames if not f.startswith(".") and not (top and f in skip)):
            path = os.path.join(dirpath, name)
            size = os.path.getsize(path) if os.path.exists(path) else "broken link"
            entries.append(f"{os.path.relpath(path, folder)}\t{size}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def data_identity(cfg: CfgNode) -> dict | None:
    """{"split": {path: checksum}, "shots": {path: checksum}} of the data a run of `cfg` reads, as its dataset
    reader declares it; None when the reader declares nothing."""
    if not cfg.DATASET.NAME:
        return None
    reader = DATASET_REGISTRY.get(cfg.DATASET.NAME)
    declared = getattr(reader, "data_identity", None)
    return declared(cfg) if declared is not None else None
