"""Named CLIP checkpoints, verified download, loading, image preprocessing and tokenisation.

``load_model`` is the one entry point for every backbone name: OpenAI's model names and checkpoint files, and
open_clip checkpoints of OpenAI's architecture (see ``open_clip_weights`` and docs/BACKBONES.md).
"""

import functools
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile

import torch
from torchvision.transforms import Compose
from tqdm import tqdm

from . import open_clip_weights
from .errors import CheckpointError
from .model import CLIP, build_model, infer_config
from .preprocessing import CLIP_MEAN, CLIP_STD, Preprocessing
from .simple_tokenizer import END_OF_TEXT, START_OF_TEXT, SimpleTokenizer

__all__ = ["CLIP_MEAN", "CLIP_STD", "Preprocessing", "available_models", "load", "load_model", "load_state_dict",
           "open_clip_tags", "tokenize"]

# The directory before each file name is the file's SHA-256, which the download is checked against.
_MODELS = {
    name: f"https://openaipublic.azureedge.net/clip/models/{sha256}/{file}"
    for name, sha256, file in [
        ("RN50", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50.pt"),
        ("RN101", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101.pt"),
        ("RN50x4", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4.pt"),
        ("RN50x16", "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa", "RN50x16.pt"),
        ("RN50x64", "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c", "RN50x64.pt"),
        ("ViT-B/32", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", "ViT-B-32.pt"),
        ("ViT-B/16", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", "ViT-B-16.pt"),
        ("ViT-L/14", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "ViT-L-14.pt"),
        ("ViT-L/14@336px", "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", "ViT-L-14-336px.pt"),
    ]
}
DEFAULT_DOWNLOAD_ROOT = "~/.cache/clip"
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def available_models() -> list[str]:
    """OpenAI's model names accepted by ``load`` (besides open_clip tags and local checkpoint paths)."""
    return list(_MODELS)


def open_clip_tags() -> list[str]:
    """The open_clip pretrained checkpoints ``load_model`` accepts, as "<open_clip model>/<pretrained tag>"."""
    return open_clip_weights.available_tags()


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's content, computed once per process for a file that has not changed since (a run
    checks its weights file several times: its fingerprint, its record, each checkpoint)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _download(url: str, root: str | os.PathLike | None = None) -> str:
    """Path of the cached file for ``url``, downloading it when missing or when the cached copy is corrupt.

    The download goes to a temporary file next to the target and is renamed into place only after its SHA-256
    matches, so an interrupted or corrupt transfer never leaves a file that looks valid.
    """
    root = os.path.expanduser(root or DEFAULT_DOWNLOAD_ROOT)
    os.makedirs(root, exist_ok=True)
    filename = os.path.basename(url)
    expected = url.split("/")[-2]
    target = os.path.join(root, filename)

    if os.path.exists(target) and not os.path.isfile(target):
        raise CheckpointError(f"{target} exists and is not a regular file; remove it or pass another download_root")
    if os.path.isfile(target):
        if file_sha256(target) == expected:
            return target
        warnings.warn(f"{target} exists, but its SHA-256 does not match {expected}; downloading it again",
                      RuntimeWarning, stacklevel=2)

    fd, partial = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=root)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as source:
                    total = int(source.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="iB", unit_scale=True, unit_divisor=1024, desc=filename) as bar:
                        for chunk in iter(lambda: source.read(1 << 16), b""):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except _NETWORK_ERRORS as err:
                raise CheckpointError(
                    f"Could not download {filename} from {url} ({err}). Without network access, fetch the file "
                    f"elsewhere and put it in the cache folder {root} (set by download_root, default "
                    f"{DEFAULT_DOWNLOAD_ROOT}), or set MODEL.BACKBONE.NAME to the path of a local checkpoint file."
                ) from err
        if digest.hexdigest() != expected:
            raise CheckpointError(
                f"Downloaded {filename} from {url}, but its SHA-256 is {digest.hexdigest()}, not {expected}; the file "
                "was discarded. Retry, or download it manually and set MODEL.BACKBONE.NAME to its path."
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def _resolve(name_or_path: str, download_root: str | os.PathLike | None) -> str:
    if name_or_path in _MODELS:
        return _download(_MODELS[name_or_path], download_root)
    path = os.path.expanduser(str(name_or_path))
    if os.path.isfile(path):
        return path
    raise CheckpointError(
        f"CLIP model {name_or_path!r} is neither a known name nor an existing file; use one of "
        f"{available_models()}, the path of a local checkpoint, or (with clip.load_model or clip.load) an open_clip "
        f"'<model>/<pretrained tag>' such as 'ViT-B-16/laion2b_s34b_b88k' (clip.open_clip_tags() lists them)"
    )


def weights_sha256(name_or_path: str, download_root: str | os.PathLike | None = None) -> str:
    """The SHA-256 of the weights file a name stands for (after ``load_model`` put it in place): an OpenAI
    model's is part of its URL and was checked when the file was read; any other file is hashed."""
    if name_or_path in _MODELS:
        return _MODELS[name_or_path].split("/")[-2]
    path = os.path.expanduser(str(name_or_path))
    source = None if os.path.isfile(path) else open_clip_weights.named_source(str(name_or_path), download_root)
    return file_sha256(source.path if source is not None else _resolve(name_or_path, download_root))


def _is_torchscript(path: str) -> bool:
    """Whether the file is a TorchScript archive: a zip holding compiled code, which a ``torch.save`` zip lacks.
    Asked before trying to load it as one, which takes seconds for a large state dict that is not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def _load_torchscript(path: str, device: str | torch.device = "cpu") -> torch.jit.ScriptModule | None:
    """The TorchScript archive at ``path``, or None when the file is something else."""
    if not _is_torchscript(path):
        return None
    with open(path, "rb") as file, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit", category=FutureWarning)
        try:
            return torch.jit.load(file, map_location=device).eval()
        except RuntimeError:
            return None


def _read_safetensors(path: str) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise CheckpointError(f"Reading {path} needs the safetensors package: run `pip install safetensors`, or "
                           "use the checkpoint's .bin / .pt form") from err
    return load_file(path, device="cpu")


def _read_state_dict(path: str) -> tuple[dict, bool]:
    """(state dict on CPU, whether the file is a TorchScript archive)."""
    if path.endswith(".safetensors"):
        return _read_safetensors(path), False
    archive = _load_torchscript(path)
    if archive is not None:
        return archive.state_dict(), True
    try:
        with open(path, "rb") as file:
            checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"Could not read CLIP checkpoint {path}: it is neither a TorchScript archive nor a state dict saved "
            f"with torch.save ({err}). The file is truncated or damaged: replace it with an intact copy"
        ) from err
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"CLIP checkpoint {path} holds {type(checkpoint).__name__}, not a state dict of tensors")
    return checkpoint, False


def load_state_dict(name_or_path: str, download_root: str | os.PathLike | None = None) -> dict:
    """The OpenAI-format state dict (on CPU) of a named model (downloaded and cached) or of a local file: a
    TorchScript archive like OpenAI's releases, or a plain ``torch.save`` state dict (optionally under
    ``"state_dict"``)."""
    return _read_state_dict(_resolve(name_or_path, download_root))[0]


def load_model(name_or_path: str, download_root: str | os.PathLike | None = None) -> tuple[CLIP, Preprocessing]:
    """(CLIP in eval mode and in its checkpoint's precision, the preprocessing its checkpoint was trained with).

    The precision is the weights': OpenAI's fp16 layout for checkpoints stored so (OpenAI's releases), fp32 for
    fp32 ones (open_clip's LAION, DataComp, DFN and MetaCLIP checkpoints), which are never rounded to fp16 here.

    ``name_or_path`` is one of
    - an OpenAI model name (``available_models()``), downloaded into ``download_root`` (default ~/.cache/clip);
    - an open_clip "<model>/<pretrained tag>" (``open_clip_tags()``), downloaded through ``huggingface_hub`` into
      its cache (``download_root`` when given);
    - "<open_clip model>/<file>": a local open_clip state dict of that model config;
    - a local file: open_clip's, when an ``open_clip_config.json`` lies beside it, else OpenAI's layout.
    OpenAI's checkpoints use OpenAI's preprocessing; open_clip's take theirs from the tag or config.
    """
    if name_or_path not in _MODELS:
        path = os.path.expanduser(str(name_or_path))
        source = (open_clip_weights.sibling_source(path) if os.path.isfile(path)
                  else open_clip_weights.named_source(str(name_or_path), download_root))
        if source is not None:
            return open_clip_weights.build(source, _read_state_dict(source.path)[0])
    model = build_model(load_state_dict(name_or_path, download_root), half=None)
    return model, Preprocessing(model.visual.input_resolution)


def load(name_or_path: str, device: str | torch.device = "cpu", jit: bool = False,
         download_root: str | os.PathLike | None = None) -> tuple[CLIP | torch.jit.ScriptModule, Compose]:
    """(model, preprocess) for any name ``load_model`` takes.

    The model is ``load_model``'s (in its checkpoint's precision, fp32 on CPU) in eval mode; ``preprocess`` is
    ``Preprocessing.transform()`` of its checkpoint. ``jit=True`` instead returns an OpenAI TorchScript archive
    itself, exactly as traced.
    """
    if jit:
        path = _resolve(name_or_path, download_root)
        state_dict, is_archive = _read_state_dict(path)
        if not is_archive:
            raise CheckpointError(f"jit=True needs a TorchScript archive, but {path} is a plain state dict; "
                               "load it with jit=False")
        size = infer_config(state_dict)["image_resolution"]
        return _load_torchscript(path, device), Preprocessing(size).transform()
    model, preprocessing = load_model(name_or_path, download_root)
    model = model.to(device)
    if torch.device(device).type == "cpu":
        model.float()
    return model, preprocessing.transform()


@functools.lru_cache(maxsize=1)
def _tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def tokenize(texts: str | list[str], context_length: int = 77, truncate: bool = False) -> torch.LongTensor:
    """Token ids [len(texts), context_length]: start token, BPE ids, end token, zero padding (int64).

    A text longer than the context raises an error unless ``truncate``, which keeps the first ``context_length``
    ids and makes the last one the end token.
    """
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = _tokenizer()
    sot, eot = tokenizer.encoder[START_OF_TEXT], tokenizer.encoder[END_OF_TEXT]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [sot, *tokenizer.encode(text), eot]
        if len(ids) > context_length:
            if not truncate:
                raise CheckpointError(
                    f"Input {text!r} is {len(ids)} tokens long with start and end tokens, more than the context "
                    f"length {context_length}; shorten it or pass truncate=True"
                )
            ids = ids[:context_length]
            ids[-1] = eot
        result[row, : len(ids)] = torch.tensor(ids)
    return result
