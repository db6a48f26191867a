"""Evaluation from cached image features: a frozen image encoder's output on a test image is computed once.

When the test logits of a method come from the output of a frozen, unprompted image encoder (CoOp, CoCoOp, DePT,
KgCoOp and their AnchorOPT variants, zero-shot CLIP; not MaPLe, which prompts it), that output depends only on what
the key below holds, so every later evaluation of the same image (the epochs' validations, the base/new tests of
every seed and method, the cross-dataset targets) can read it from `FEATURE_CACHE.DIR` instead of loading,
transforming and encoding the image. Training never uses the cache: its views are random.

What decides a feature, and so the key:
- the group (a folder, dassl/engine/feature_store.py): the encoder's weights as they are in memory (the SHA-256 of every
  tensor, so another checkpoint, another dtype or weights a checkpoint overwrote are another group), the code that
  runs it, the precision (autocast), the image pipeline (the dataset wrapper and every test transform step with its
  parameters: INPUT.SIZE, INTERPOLATION, PIXEL_MEAN/STD), the versions of torch, torchvision, Pillow and its image
  decoders, and the device (the CPU's instruction set, or the GPU with its libraries and TF32 switches);
- the entry: the SHA-256 of the image file's bytes, so a changed file is a new entry, and copies of a dataset in
  two places share theirs.
Entries hold the encoder's output in the dtype it has (fp16, bf16 or fp32): the logits are computed from the same
numbers with or without the cache. A missing or damaged entry is computed, in the test loader's batches (a cold
cache gives the uncached numbers bit for bit; an entry computed in other batches may differ by float rounding), and
stored if the file still has the bytes it was looked up by. An evaluation from the cache draws the random numbers
an evaluation without it draws, so a training run's later epochs are the same either way.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import platform
import sys
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import PIL
import PIL.features
import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader, SequentialSampler, Subset
from tqdm import tqdm
from yacs.config import CfgNode

from dassl.data.data_manager import DatasetWrapper
from dassl.data.transforms import InstanceNormalization
from dassl.engine.feature_store import DAMAGED, FeatureStore
from dassl.engine.precision import autocast
from dassl.engine.trainer import SimpleTrainer, progress_bars_shown
from dassl.utils import read_image

FORMAT = 2  # of the key and the entries; raising it leaves the groups written before unused
DEFAULT_DIR = os.path.join("~", ".cache", "atprompt", "features")
# Test transform steps that map one image to one tensor, always the same: nothing random can reach the cache.
DETERMINISTIC_STEPS = (T.Resize, T.CenterCrop, T.ToTensor, T.PILToTensor, T.ConvertImageDtype, T.Normalize,
                       InstanceNormalization)
LOOKUP_THREADS = 8  # file reads and hashing release the GIL
LOOKUP_CHUNK = 256
# The persistent-worker loaders whose one iterator, had they been iterated, would have drawn its seed already.
_PERSISTENT_STARTED: weakref.WeakSet[DataLoader] = weakref.WeakSet()


def cache_folder(cfg: CfgNode) -> str:
    """The cache folder FEATURE_CACHE.DIR names, as an absolute path."""
    return os.path.abspath(os.path.expanduser(cfg.FEATURE_CACHE.DIR or DEFAULT_DIR))


def _owner(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def weights_checksum(module: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and SHA-256s of the bytes of every tensor of `module`'s state, the
    tensors hashed on a few threads (hashlib releases the GIL): a warm evaluation's largest cost after the logits."""

    def line(item: tuple[str, torch.Tensor]) -> str:
        name, tensor = item
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        return f"{name}:{tensor.dtype}:{list(tensor.shape)}:{hashlib.sha256(data).hexdigest()}"

    with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
        lines = pool.map(line, sorted(module.state_dict().items()))
    return hashlib.sha256(";".join(lines).encode()).hexdigest()


def _source(obj) -> str:
    """Source text of a function or class, or the whole file of a module (module-level helpers included)."""
    if inspect.ismodule(obj):
        with open(inspect.getsourcefile(obj), encoding="utf-8") as f:
            return f.read()
    return inspect.getsource(obj)


def code_checksum(encoder: nn.Module, functions: list[Callable]) -> str:
    """SHA-256 of the code that turns an image file into a feature, torch's and torchvision's aside (their versions
    are in the key): the files of the encoder's modules, the image reader, the dataset wrapper and `functions`."""
    modules = {sys.modules[type(m).__module__] for m in encoder.modules()
               if not type(m).__module__.startswith("torch")}
    parts = [_source(m) for m in sorted(modules, key=lambda m: m.__name__)]
    parts += [_source(obj) for obj in (read_image, DatasetWrapper, *functions)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def transform_steps(transform: Callable) -> list[Callable] | None:
    """The steps of a test transform, or None when one of them is not known to be deterministic."""
    steps = list(transform.transforms) if isinstance(transform, T.Compose) else [transform]
    return steps if all(isinstance(s, DETERMINISTIC_STEPS) for s in steps) else None


def step_description(step: Callable) -> str:
    """A step with its parameters: torchvision's repr says them; ours (no repr of their own) by their attributes."""
    if type(step).__repr__ is not object.__repr__:
        return repr(step)
    return f"{type(step).__qualname__}({sorted(vars(step).items())})"


def device_description(device: torch.device) -> str:
    """What of the device can change the encoder's rounding: its kind and instruction set, or the GPU, its
    libraries and TF32 switches."""
    if device.type != "cuda":
        return f"{device.type} {platform.machine()} {torch.backends.cpu.get_cpu_capability()}"
    return (f"cuda {torch.cuda.get_device_name(device)}; CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}; tf32 matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn "
            f"{torch.backends.cudnn.allow_tf32}; float32 matmul {torch.get_float32_matmul_precision()}")


def library_versions() -> dict[str, str | None]:
    """torch, torchvision (the transforms), Pillow and the decoders it reads images with."""
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "Pillow": PIL.__version__,
            "jpeg": PIL.features.version_codec("jpg"), "jpeg_turbo": PIL.features.version_feature("libjpeg_turbo"),
            "zlib": PIL.features.version_codec("zlib"), "libwebp": PIL.features.version_module("webp")}


def file_digest(path: str) -> str | None:
    """SHA-256 of a file's bytes; None when it cannot be read (the loader then says why)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _chunks(n: int) -> list[range]:
    return [range(start, min(start + LOOKUP_CHUNK, n)) for start in range(0, n, LOOKUP_CHUNK)]


def _parallel(function: Callable[[int], object], n: int) -> list:
    """[function(i) for i in range(n)] on a few threads."""
    with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
        return [value for chunk in pool.map(lambda r: [function(i) for i in r], _chunks(n)) for value in chunk]


def _signature(vector: torch.Tensor) -> tuple:
    return tuple(vector.shape), vector.dtype


def unlike_the_rest(cached: dict[int, torch.Tensor], computed: dict[int, torch.Tensor]) -> list[int]:
    """The cached entries whose shape or dtype differs from the encoder's output: that of the features just
    computed, else the one most cached entries have. An entry of another width would otherwise fail the batch."""
    if computed:
        reference = _signature(next(iter(computed.values())))
    elif cached:
        signatures = [_signature(v) for v in cached.values()]
        reference = max(set(signatures), key=signatures.count)
    else:
        return []
    return [i for i, vector in cached.items() if _signature(vector) != reference]


def draw_as_iterating(data_loader: DataLoader) -> None:
    """Draw from the global generator what iterating `data_loader` draws: torch's iterator takes its workers' base
    seed from it when it is made (a persistent one only the first time), and the cache reads no image through it.
    The next epoch's shuffling and augmentation then draw the same numbers with the cache as without."""
    if data_loader.persistent_workers and data_loader.num_workers > 0:
        if data_loader in _PERSISTENT_STARTED:
            return
        _PERSISTENT_STARTED.add(data_loader)
    torch.empty((), dtype=torch.int64).random_(generator=data_loader.generator)


class CachedEvaluation:
    """Trainer mixin: with FEATURE_CACHE.ENABLED, test batches are scored from cached image features when the
    trainer's test logits come from a frozen image encoder alone (`feature_cache_refusal` says when they do not).

    A trainer provides `frozen_image_encoder()`, `encode_images(image)` (the encoder's output, what is cached) and
    `logits_from_encoded(encoded)`, and its `model_inference` must be `logits_from_encoded(encode_images(image))`:
    both are checked to come from the same class, so a subclass that changes one alone is evaluated without the cache.
    """

    def frozen_image_encoder(self) -> nn.Module | None:
        """The image encoder whose output alone decides the test logits; None when there is none (MaPLe)."""
        return None

    def encode_images(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encoding_code(self) -> list[Callable]:
        """The functions, besides the encoder's modules, that compute what is cached (part of the key): `encode_images`
        and the autocast it runs the precision with."""
        return [type(self).encode_images, autocast]

    def feature_cache_refusal(self, data_loader: DataLoader) -> str:
        """Why the cache cannot serve this evaluation ("" when it can)."""
        cls = type(self)
        if _owner(cls, "model_inference") is not _owner(cls, "logits_from_encoded"):
            return f"{cls.__name__}.model_inference is not written from its cached image features"
        if _owner(cls, "parse_batch_test") is not SimpleTrainer:
            return f"{cls.__name__} reads test batches its own way"
        encoder = self.frozen_image_encoder()
        if encoder is None:
            return f"the test logits of {cls.__name__} do not come from a frozen image encoder alone"
        wrapper = data_loader.dataset
        if type(wrapper) is not DatasetWrapper or not isinstance(data_loader.sampler, SequentialSampler):
            return "the test data is not read by the standard sequential loader"
        if wrapper.transform is None or transform_steps(wrapper.transform) is None:
            return f"the test transform is not known to be deterministic: {wrapper.transform}"
        return ""

    def evaluation_outputs(self, data_loader: DataLoader, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.cfg.FEATURE_CACHE.ENABLED:
            yield from super().evaluation_outputs(data_loader, split)
            return
        refusal = self.feature_cache_refusal(data_loader)
        if refusal:
            told = self.__dict__.setdefault("_feature_cache_refusals", set())
            if refusal not in told:
                told.add(refusal)
                print(f"Feature cache: not used ({refusal}); features are computed")
            yield from super().evaluation_outputs(data_loader, split)
            return
        draw_as_iterating(data_loader)
        yield from self._cached_outputs(data_loader, split)

    def feature_store(self, data_loader: DataLoader) -> FeatureStore:
        """The group of this trainer's encoder, precision, image pipeline and device."""
        encoder = self.frozen_image_encoder()
        device = next(encoder.parameters()).device
        wrapper = data_loader.dataset
        steps = transform_steps(wrapper.transform)
        own_steps = [type(s) for s in steps if not type(s).__module__.startswith("torch")]
        description = {
            "format": FORMAT,
            "encoder": {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
                        "weights_sha256": weights_checksum(encoder)},
            "code_sha256": code_checksum(encoder, self.encoding_code() + own_steps),
            "precision": self.prec,
            "pipeline": {"wrapper": f"{type(wrapper).__module__}.{type(wrapper).__qualname__}",
                         "transform": [step_description(s) for s in steps]},
            "versions": library_versions(),
            "device": device_description(device),
        }
        about = {"backbone": getattr(self, "backbone", None), "trainer": self.cfg.TRAINER.NAME}
        return FeatureStore(cache_folder(self.cfg), description, about)

    @torch.no_grad()
    def _cached_outputs(self, data_loader: DataLoader, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        items = data_loader.dataset.data_source
        store = self.feature_store(data_loader)
        store.mark_used()  # first: a group is described before it holds entries
        keys = _parallel(lambda i: file_digest(items[i].impath), len(items))
        looked_up = _parallel(lambda i: None if keys[i] is None else store.read(keys[i]), len(items))
        damaged = sum(entry is DAMAGED for entry in looked_up)
        features = {i: entry for i, entry in enumerate(looked_up) if isinstance(entry, torch.Tensor)}
        missing = [i for i in range(len(items)) if i not in features]
        with torch.random.fork_rng(devices=[]):  # its loader's draws are those of draw_as_iterating
            computed = self._encode(data_loader, missing, split) if missing else {}
            unlike = unlike_the_rest(features, computed)
            if unlike:  # not this encoder's output (another width or dtype): computed like a damaged entry
                computed.update(self._encode(data_loader, unlike, split))
        hits, damaged = len(features) - len(unlike), damaged + len(unlike)
        features.update(computed)
        if computed:
            fresh = sorted(computed)
            unchanged = _parallel(lambda j: keys[fresh[j]] is not None
                                  and file_digest(items[fresh[j]].impath) == keys[fresh[j]], len(fresh))
            for i, same in zip(fresh, unchanged):
                if same:
                    store.write(keys[i], features[i])
        print(self._report(split, len(items), hits, damaged, store))
        for indices in data_loader.batch_sampler:
            encoded = torch.stack([features[i] for i in indices]).to(self.device)
            labels = torch.tensor([items[i].label for i in indices], device=self.device)
            yield self.logits_from_encoded(encoded), labels

    def _encode(self, data_loader: DataLoader, indices: list[int], split: str) -> dict[int, torch.Tensor]:
        """The encoder's output for the images at `indices`, read in the test loader's batch size and order."""
        loader = DataLoader(Subset(data_loader.dataset, indices), batch_size=data_loader.batch_size,
                            num_workers=data_loader.num_workers, pin_memory=data_loader.pin_memory,
                            collate_fn=data_loader.collate_fn)
        rows = []
        for batch in tqdm(loader, desc=f"Encode {split}", leave=False, disable=not progress_bars_shown()):
            image, _ = self.parse_batch_test(batch)
            rows.extend(self.encode_images(image).cpu())
        return dict(zip(indices, rows))

    @staticmethod
    def _report(split: str, total: int, hits: int, damaged: int, store: FeatureStore) -> str:
        computed = total - hits
        line = f"Feature cache: {hits} of {total} {split} image features from the cache, {computed} computed"
        if damaged:
            line += f" ({damaged} of them for damaged entries)"
        if store.write_error is not None and computed:
            line += f"; not stored: {store.write_error}"
        return line + f" [{store.folder}]"
