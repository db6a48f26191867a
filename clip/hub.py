"""Files from the Hugging Face hub through ``huggingface_hub`` (an optional package) and its cache, verified.

``huggingface_hub`` names each cached blob after the hash the hub reported for it: the SHA-256 for large (LFS)
files, the git blob SHA-1 for small ones. A cached file is checked against that name before it is used, so a
truncated or damaged copy is fetched again instead of failing later (the client itself does not re-check it).
"""

import hashlib
import os
import re
import warnings

from .errors import CheckpointError


def _hub():
    try:
        import huggingface_hub.constants  # a submodule the package does not load by itself
    except ImportError as err:
        raise CheckpointError(
            "open_clip pretrained tags are downloaded from the Hugging Face hub, which needs the huggingface_hub "
            "package: run `pip install huggingface_hub`, or set MODEL.BACKBONE.NAME to a local checkpoint file"
        ) from err
    return huggingface_hub


def _cache_folder(cache_dir: str | os.PathLike | None) -> str:
    """The folder ``huggingface_hub`` caches into: ``cache_dir``, else its default (``HF_HUB_CACHE``)."""
    if cache_dir:
        return os.path.expanduser(str(cache_dir))
    return str(_hub().constants.HF_HUB_CACHE)


def _digest(path: str, algorithm: str, prefix: bytes = b"") -> str:
    digest = hashlib.new(algorithm, prefix)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def matches_cache_name(path: str) -> bool:
    """Whether the file behind ``path`` hashes to the name of its cache blob. A file whose name is not a hash
    (a cache without symlinks, or a file put there by hand) cannot be checked and passes."""
    real = os.path.realpath(path)
    name = os.path.basename(real)
    if re.fullmatch(r"[0-9a-f]{64}", name):
        return _digest(real, "sha256") == name
    if re.fullmatch(r"[0-9a-f]{40}", name):  # git's blob id: SHA-1 over a "blob <size>\0" header and the bytes
        return _digest(real, "sha1", f"blob {os.path.getsize(real)}\0".encode()) == name
    return True


def download(repo_id: str, filename: str, cache_dir: str | os.PathLike | None, model: str, tag: str) -> str:
    """Path of ``filename`` of the hub model repository ``repo_id`` in the cache, downloaded when missing and
    again when the cached copy is damaged; ``model`` / ``tag`` (the open_clip names) are for the messages."""
    hub = _hub()
    folder = _cache_folder(cache_dir)
    try:
        path = hub.hf_hub_download(repo_id, filename, cache_dir=folder)
        if not matches_cache_name(path):
            warnings.warn(f"{path} does not match the hash the hub gave for it; downloading it again",
                          RuntimeWarning, stacklevel=2)
            path = hub.hf_hub_download(repo_id, filename, cache_dir=folder, force_download=True)
    except OSError as err:  # offline, unreachable, or missing: the hub client's errors are all OSErrors
        raise CheckpointError(
            f"Could not get {filename} of {model}/{tag} from the Hugging Face repository {repo_id} into the cache "
            f"folder {folder} ({type(err).__name__}: {err}). Without network access, fetch it where there is "
            f"network with huggingface_hub.hf_hub_download({repo_id!r}, {filename!r}, cache_dir=...) and copy that "
            f"cache folder to {folder} (set by MODEL.BACKBONE.DOWNLOAD_ROOT, default the Hugging Face cache), or "
            f"download the file by hand and set MODEL.BACKBONE.NAME to '{model}/<path of the file>'"
        ) from err
    if not matches_cache_name(path):
        raise CheckpointError(f"Downloaded {filename} of {model}/{tag} from {repo_id}, but it does not match the hash "
                           f"the hub gave for it ({path}); delete it and retry")
    return path
