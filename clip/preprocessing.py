"""What a CLIP checkpoint expects of its input images, and the torchvision transform that gives it."""

from dataclasses import dataclass

from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

# The statistics OpenAI normalised with; most open_clip checkpoints keep them.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_INTERPOLATIONS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
_RESIZE_MODES = ("shortest", "squash")


def _to_rgb(image):
    return image.convert("RGB")


@dataclass(frozen=True)
class Preprocessing:
    """The input a checkpoint was trained on: ``size`` x ``size`` RGB images normalised by ``mean`` / ``std``.

    ``resize_mode`` "shortest" resizes the shorter side to ``size`` and crops the centre (OpenAI's); "squash"
    resizes both sides to ``size``. ``interpolation`` is "bicubic" or "bilinear". Trainers compare these with
    ``INPUT.SIZE``, ``INPUT.PIXEL_MEAN``, ``INPUT.PIXEL_STD`` and ``INPUT.INTERPOLATION``.
    """

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        # Configs give lists (JSON); tuples of floats keep records comparable and hashable.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {sorted(_INTERPOLATIONS)}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ValueError(f"resize_mode {self.resize_mode!r} is not one of {list(_RESIZE_MODES)}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean {self.mean} and std {self.std} need one value per RGB channel")

    def transform(self) -> Compose:
        """PIL image -> normalised tensor [3, size, size]."""
        resize = self.size if self.resize_mode == "shortest" else (self.size, self.size)
        return Compose([
            Resize(resize, interpolation=_INTERPOLATIONS[self.interpolation]),
            CenterCrop(self.size),
            _to_rgb,
            ToTensor(),
            Normalize(self.mean, self.std),
        ])
