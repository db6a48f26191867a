"""Image transforms chosen by name from INPUT.TRANSFORMS (Dassl names, built in Dassl's fixed order)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torchvision.transforms as T
from PIL import Image
from yacs.config import CfgNode

from dassl.utils.errors import UserError

INTERPOLATION_MODES = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}

TRANSFORM_NAMES = (
    "random_flip", "random_resized_crop", "normalize", "instance_norm", "random_crop", "random_translation",
    "center_crop", "cutout", "imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment", "gaussian_noise",
    "colorjitter", "randomgrayscale", "gaussian_blur",
)

# Dassl's own RandAugment variants; no config of this project uses them, torchvision has no equivalent.
UNSUPPORTED_NAMES = ("randaugment_fixmatch", "randaugment2")

# The INPUT keys of each transform: they do nothing unless it is among INPUT.TRANSFORMS.
TRANSFORM_KEYS = {
    "random_crop": ("CROP_PADDING",), "random_resized_crop": ("RRCROP_SCALE",), "cutout": ("CUTOUT_N", "CUTOUT_LEN"),
    "gaussian_noise": ("GN_MEAN", "GN_STD"), "randaugment": ("RANDAUGMENT_N", "RANDAUGMENT_M"),
    "colorjitter": ("COLORJITTER_B", "COLORJITTER_C", "COLORJITTER_S", "COLORJITTER_H"),
    "randomgrayscale": ("RGS_P",), "gaussian_blur": ("GB_P", "GB_K"),
}

AUTOAUGMENT_POLICIES = {
    "imagenet_policy": T.AutoAugmentPolicy.IMAGENET,
    "cifar10_policy": T.AutoAugmentPolicy.CIFAR10,
    "svhn_policy": T.AutoAugmentPolicy.SVHN,
}


class Random2DTranslation:
    """With probability ``p``, enlarge the image by 1.125x and crop a random (height, width) window; otherwise
    resize to (height, width)."""

    def __init__(self, height: int, width: int, p: float = 0.5) -> None:
        self.height, self.width, self.p = height, width, p

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.uniform(0, 1) > self.p:
            return img.resize((self.width, self.height), Image.BILINEAR)
        big_w, big_h = round(self.width * 1.125), round(self.height * 1.125)
        img = img.resize((big_w, big_h), Image.BILINEAR)
        x = round(random.uniform(0, big_w - self.width))
        y = round(random.uniform(0, big_h - self.height))
        return img.crop((x, y, x + self.width, y + self.height))


class Cutout:
    """Zero ``n_holes`` square patches of side ``length`` at random centres of a (C, H, W) tensor."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes, self.length = n_holes, length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        mask = torch.ones(h, w, dtype=img.dtype)
        half = self.length // 2
        for _ in range(self.n_holes):
            y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
            mask[max(y - half, 0):y + half, max(x - half, 0):x + half] = 0
        return img * mask


class GaussianNoise:
    """With probability ``p``, add N(mean, std) noise to a tensor image."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn_like(img) * self.std + self.mean


class InstanceNormalization:
    """Standardise each channel of a (C, H, W) tensor by its own mean and std."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        flat = img.flatten(1)
        mean, std = flat.mean(1), flat.std(1)
        return (img - mean[:, None, None]) / (std[:, None, None] + self.eps)


def _check_choices(choices) -> None:
    for name in choices:
        if name in UNSUPPORTED_NAMES:
            raise UserError(f"INPUT.TRANSFORMS: {name!r} (a Dassl-only RandAugment variant) is not provided here; "
                            f"use 'randaugment' (torchvision RandAugment with INPUT.RANDAUGMENT_N / _M)")
        if name not in TRANSFORM_NAMES:
            raise UserError(f"INPUT.TRANSFORMS: unknown transform {name!r}; valid names are {list(TRANSFORM_NAMES)}")


def interpolation_mode(cfg) -> T.InterpolationMode:
    """The torchvision mode named by INPUT.INTERPOLATION."""
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATION_MODES:
        raise UserError(f"INPUT.INTERPOLATION: unknown mode {name!r}; valid modes are {list(INTERPOLATION_MODES)}")
    return INTERPOLATION_MODES[name]


def unused_transform_keys(cfg: CfgNode, choices: Sequence[str]) -> list[str]:
    """The INPUT keys set away from their default whose transform is not among `choices`: they have no effect."""
    from dassl.config import get_cfg_default

    default = get_cfg_default().INPUT
    return [f"INPUT.{key}" for name, keys in TRANSFORM_KEYS.items() if name not in choices
            for key in keys if cfg.INPUT[key] != default[key]]


def build_transform(cfg, is_train: bool = True, choices=None) -> T.Compose | None:
    """The train or test transform for ``cfg.INPUT``; ``choices`` overrides INPUT.TRANSFORMS.

    Returns None when INPUT.NO_TRANSFORM is set.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    _check_choices(choices)
    unused = unused_transform_keys(cfg, choices) if is_train else []
    if unused:
        verb = "has" if len(unused) == 1 else "have"
        print(f"Note: {', '.join(unused)} {verb} no effect: not set for a transform in INPUT.TRANSFORMS {choices}")
    build = _train_steps if is_train else _test_steps
    print(f"Building transform_{'train' if is_train else 'test'}")
    steps = []
    for description, step in build(cfg, choices, interpolation_mode(cfg)):
        print(f"+ {description}")
        steps.append(step)
    return T.Compose(steps)


def _normalize(cfg) -> tuple[str, T.Normalize]:
    mean, std = list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)
    return f"normalization (mean={mean}, std={std})", T.Normalize(mean=mean, std=std)


def _train_steps(cfg, choices, interp):
    inp = cfg.INPUT
    size = tuple(inp.SIZE)
    # Without a cropping step the image must still end at SIZE.
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        yield f"resize to {size[0]}x{size[1]}", T.Resize(size, interpolation=interp)
    if "random_translation" in choices:
        yield "random translation", Random2DTranslation(size[0], size[1])
    if "random_crop" in choices:
        yield f"random crop (padding = {inp.CROP_PADDING})", T.RandomCrop(size, padding=inp.CROP_PADDING)
    if "random_resized_crop" in choices:
        scale = tuple(inp.RRCROP_SCALE)
        yield (f"random resized crop (size={size}, scale={scale})",
               T.RandomResizedCrop(size, scale=scale, interpolation=interp))
    # "center_crop" is accepted but adds no train step, as in Dassl: the test pipeline always center-crops.
    if "random_flip" in choices:
        yield "random flip", T.RandomHorizontalFlip()
    for name, policy in AUTOAUGMENT_POLICIES.items():
        if name in choices:
            yield name.replace("_", " "), T.AutoAugment(policy)
    if "randaugment" in choices:
        yield (f"randaugment (n={inp.RANDAUGMENT_N}, m={inp.RANDAUGMENT_M})",
               T.RandAugment(num_ops=inp.RANDAUGMENT_N, magnitude=inp.RANDAUGMENT_M))
    if "colorjitter" in choices:
        yield "color jitter", T.ColorJitter(brightness=inp.COLORJITTER_B, contrast=inp.COLORJITTER_C,
                                            saturation=inp.COLORJITTER_S, hue=inp.COLORJITTER_H)
    if "randomgrayscale" in choices:
        yield "random gray scale", T.RandomGrayscale(p=inp.RGS_P)
    if "gaussian_blur" in choices:
        yield f"gaussian blur (kernel={inp.GB_K}, p={inp.GB_P})", T.RandomApply([T.GaussianBlur(inp.GB_K)], p=inp.GB_P)
    yield "to torch tensor of range [0, 1]", T.ToTensor()
    if "cutout" in choices:
        yield f"cutout (n_holes={inp.CUTOUT_N}, length={inp.CUTOUT_LEN})", Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN)
    if "normalize" in choices:
        yield _normalize(cfg)
    if "gaussian_noise" in choices:
        yield f"gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})", GaussianNoise(inp.GN_MEAN, inp.GN_STD)
    if "instance_norm" in choices:
        yield "instance normalization", InstanceNormalization()


def _test_steps(cfg, choices, interp):
    size = tuple(cfg.INPUT.SIZE)
    yield f"resize the smaller edge to {max(size)}", T.Resize(max(size), interpolation=interp)
    yield f"{size[0]}x{size[1]} center crop", T.CenterCrop(size)
    yield "to torch tensor of range [0, 1]", T.ToTensor()
    if "normalize" in choices:
        yield _normalize(cfg)
    if "instance_norm" in choices:
        yield "instance normalization", InstanceNormalization()
