"""A folder of feature vectors that many runs read and fill at once: one small file per entry, in groups.

Layout under the cache folder: `<group>/group.json` says what the group's features were computed with (for people
and `tools/feature_cache.py`; the group's name is the hash of it), and `<group>/<2 hex>/<62 hex>.feat` holds one
entry, named by its 64-hex key. An entry is written to a temporary file beside its final name and renamed onto it,
so a reader sees a whole entry or none, and two runs that store the same entry leave one of two identical files.
Entries carry the checksum of their contents and of what they are the entry of (their group and key): one that a
disk fault, a full disk or a partial copy damaged, or one copied or renamed onto another entry's name (which would
serve another image's feature), is told apart from a whole one, and its caller recomputes it and writes it again.

Nothing is synced to disk before the rename: after a power loss an entry may be empty, which its checksum tells.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time

import torch

from dassl.utils import atomic_write

MAGIC = b"ATPFEAT2"
OWNER_BYTES = 16
HEADER = struct.Struct(f"<8sBI{OWNER_BYTES}s")  # magic, dtype code, number of elements, the entry's owner
CHECKSUM_BYTES = 16
NO_OWNER = bytes(OWNER_BYTES)
DTYPES = {0: torch.float32, 1: torch.float16, 2: torch.bfloat16, 3: torch.float64}
DTYPE_CODES = {dtype: code for code, dtype in DTYPES.items()}
GROUP_FILE = "group.json"
ENTRY_SUFFIX = ".feat"


class Damaged:
    """What `FeatureStore.read` returns for an entry whose file exists but does not hold a valid entry."""


DAMAGED = Damaged()


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES).digest()


def entry_owner(group: str, key: str) -> bytes:
    """What an entry vouches to be the entry of: its group and key, hashed to a fixed size."""
    return hashlib.blake2b(f"{group}/{key}".encode(), digest_size=OWNER_BYTES).digest()


def encode_entry(vector: torch.Tensor, owner: bytes = NO_OWNER) -> bytes:
    """The file contents of one entry: header (with its `owner`), the vector's bytes, the checksum of both."""
    vector = vector.detach().cpu().contiguous().reshape(-1)
    header = HEADER.pack(MAGIC, DTYPE_CODES[vector.dtype], vector.numel(), owner)
    body = header + vector.view(torch.uint8).numpy().tobytes()
    return body + _checksum(body)


def decode_entry(data: bytes, owner: bytes | None = None) -> torch.Tensor | Damaged:
    """The vector an entry's file holds, or DAMAGED when the bytes are not a whole, unaltered entry, when they are
    another entry's (`owner` given), or when the vector is not finite (a cached NaN would be blamed on the model)."""
    if len(data) < HEADER.size + CHECKSUM_BYTES:
        return DAMAGED
    body, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    magic, code, numel, stored_owner = HEADER.unpack_from(body)
    if magic != MAGIC or code not in DTYPES or _checksum(body) != checksum:
        return DAMAGED
    if owner is not None and stored_owner != owner:
        return DAMAGED
    dtype = DTYPES[code]
    payload = bytearray(body[HEADER.size :])
    if len(payload) != numel * dtype.itemsize:
        return DAMAGED
    vector = torch.frombuffer(payload, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return vector if bool(torch.isfinite(vector).all()) else DAMAGED


class FeatureStore:
    """The entries of one group: `read` and `write` by key. Reading never raises for a missing or damaged entry, and
    a failed write (a read-only folder, a full disk) is reported once and turns writing off for this store."""

    def __init__(self, root: str, description: dict, about: dict | None = None) -> None:
        """`description` decides the group (its name is a hash of it); `about` only informs whoever lists it."""
        key = json.dumps(description, sort_keys=True, default=str)
        self.name = hashlib.sha256(key.encode()).hexdigest()[:32]
        self.folder = os.path.join(root, self.name)
        self.description = json.dumps({**description, "about": about or {}}, indent=1, sort_keys=True, default=str)
        self.write_error: OSError | None = None

    def path(self, key: str) -> str:
        return os.path.join(self.folder, key[:2], key[2:] + ENTRY_SUFFIX)

    def read(self, key: str) -> torch.Tensor | Damaged | None:
        """The entry's vector, None when there is none (or it cannot be read), DAMAGED when its file is damaged or
        holds another entry."""
        try:
            with open(self.path(key), "rb") as f:
                data = f.read()
        except OSError:
            return None
        return decode_entry(data, entry_owner(self.name, key))

    def write(self, key: str, vector: torch.Tensor) -> bool:
        """Store an entry atomically; False when it could not be written (`write_error` says why)."""
        if self.write_error is not None:
            return False
        path = self.path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(encode_entry(vector, entry_owner(self.name, key)))
                os.replace(tmp, path)
            except BaseException:
                if os.path.lexists(tmp):
                    os.remove(tmp)
                raise
        except OSError as err:
            self.write_error = err
            return False
        return True

    def mark_used(self) -> None:
        """Write group.json when it is missing, and set its time to now: what `tools/feature_cache.py` shows as
        the group's last use (and clears groups by)."""
        path = os.path.join(self.folder, GROUP_FILE)
        try:
            if os.path.isfile(path):
                os.utime(path)
                return

            def write(tmp: str) -> None:
                with open(tmp, "w") as f:
                    f.write(self.description + "\n")

            atomic_write(path, write)
        except OSError as err:
            self.write_error = self.write_error or err


def group_summary(folder: str) -> dict:
    """What a group folder holds: its description, entry count, bytes and last use (for listing and clearing)."""
    path = os.path.join(folder, GROUP_FILE)
    try:
        with open(path) as f:
            description = json.load(f)
        used = os.path.getmtime(path)
    except (OSError, ValueError):
        description, used = {}, None
    entries = size = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.endswith(ENTRY_SUFFIX):
                entries += 1
            try:
                size += os.path.getsize(os.path.join(dirpath, name))
            except OSError:  # removed meanwhile by another process
                pass
    return {"description": description, "entries": entries, "bytes": size, "last_used": used,
            "age_days": None if used is None else (time.time() - used) / 86400}
