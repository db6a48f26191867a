"""The attribute world: object classes defined by colour, shape, size and pattern, and their renderer.

Every class is a concrete object ("tomato", "traffic cone") whose look is one combination of four attributes, and
several classes share all but one attribute, so colour, shape, size and pattern are each needed to tell classes
apart. Images are pure functions of (seed, stream, class, index): the same arguments always give the same pixels.

This module needs only numpy and Pillow; the dataset reader (`datasets/attribute_world.py`) and the tiny CLIP
pretraining (`tools/pretrain_tiny_clip.py`) both build on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from dassl.utils.errors import UserError

# Reference RGB in [0, 1]; each image jitters it a little.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.96, 0.52, 0.06),
    "yellow": (0.95, 0.88, 0.12),
    "green": (0.12, 0.66, 0.18),
    "blue": (0.14, 0.32, 0.90),
    "purple": (0.56, 0.18, 0.74),
    "white": (0.96, 0.96, 0.96),
    "black": (0.07, 0.07, 0.07),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
SIZES = ("small", "large")
PATTERNS = ("plain", "striped", "dotted", "checkered")
SHAPE_ADJECTIVES = {"circle": "round", "square": "square", "triangle": "triangular", "diamond": "diamond-shaped",
                    "star": "star-shaped", "hexagon": "hexagonal"}

# Circumscribed radius as a fraction of the image side. The ranges overlap, so size alone is sometimes ambiguous,
# and clutter shapes can be as large as a small object.
_RADIUS = {"small": (0.15, 0.29), "large": (0.25, 0.42), "clutter": (0.07, 0.16)}
# Largest rotation in degrees: squares, diamonds and triangles stay upright enough to keep their identity.
_MAX_ROTATION = {"circle": 180, "square": 20, "triangle": 25, "diamond": 20, "star": 180, "hexagon": 180}
# Independent random streams, so pretraining images never coincide with the dataset's images.
STREAMS = {"train": 0, "val": 1, "test": 2, "pretrain": 3}
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class WorldClass:
    name: str
    color: str
    shape: str
    size: str
    pattern: str

    @property
    def folder(self) -> str:
        return self.name.replace(" ", "_")


def _c(name: str, color: str, shape: str, size: str, pattern: str) -> WorldClass:
    return WorldClass(name, color, shape, size, pattern)


# Label order is fixed. Base classes are the first half (labels 0-15), new classes the second half; both halves
# hold every colour and every shape, and many classes have a partner in the other half that differs in exactly
# one attribute (tomato/ladybug: pattern, grape/eggplant: size, lime/emerald: shape, pumpkin/watermelon: colour).
CLASSES: tuple[WorldClass, ...] = (
    _c("tomato", "red", "circle", "small", "plain"),
    _c("gift box", "red", "square", "large", "striped"),
    _c("tangerine", "orange", "circle", "small", "plain"),
    _c("traffic cone", "orange", "triangle", "large", "striped"),
    _c("waffle", "yellow", "square", "large", "checkered"),
    _c("sheriff badge", "yellow", "star", "small", "plain"),
    _c("lime", "green", "circle", "small", "plain"),
    _c("christmas tree", "green", "triangle", "large", "dotted"),
    _c("turtle shell", "green", "hexagon", "large", "checkered"),
    _c("blueberry", "blue", "circle", "small", "plain"),
    _c("kite", "blue", "diamond", "large", "striped"),
    _c("grape", "purple", "circle", "small", "plain"),
    _c("amethyst", "purple", "diamond", "small", "plain"),
    _c("golf ball", "white", "circle", "small", "dotted"),
    _c("hex nut", "white", "hexagon", "small", "plain"),
    _c("chessboard", "black", "square", "large", "checkered"),
    _c("ladybug", "red", "circle", "small", "dotted"),
    _c("strawberry", "red", "triangle", "small", "dotted"),
    _c("pumpkin", "orange", "circle", "large", "striped"),
    _c("starfish", "orange", "star", "large", "dotted"),
    _c("pizza slice", "yellow", "triangle", "large", "dotted"),
    _c("honeycomb", "yellow", "hexagon", "large", "checkered"),
    _c("watermelon", "green", "circle", "large", "striped"),
    _c("emerald", "green", "diamond", "small", "plain"),
    _c("sapphire", "blue", "diamond", "small", "plain"),
    _c("solar panel", "blue", "square", "large", "checkered"),
    _c("eggplant", "purple", "circle", "large", "plain"),
    _c("party hat", "purple", "triangle", "small", "striped"),
    _c("dice", "white", "square", "small", "dotted"),
    _c("snowflake", "white", "star", "small", "plain"),
    _c("bowling ball", "black", "circle", "large", "dotted"),
    _c("shuriken", "black", "star", "small", "plain"),
)


def image_rng(seed: int, stream: str, label: int, index: int) -> np.random.Generator:
    """The private random generator of one image."""
    if stream not in STREAMS:
        raise UserError(f"Unknown attribute-world stream {stream!r}; use one of {sorted(STREAMS)}.")
    return np.random.default_rng([seed, STREAMS[stream], label, index])


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "star":
        radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
        angles = [math.pi / 2 + k * math.pi / 5 for k in range(10)]
    elif shape == "diamond":
        radii = [r, 0.6 * r, r, 0.6 * r]
        angles = [math.pi / 2 + k * math.pi / 2 for k in range(4)]
    else:
        sides = {"triangle": 3, "square": 4, "hexagon": 6}[shape]
        # Squares sit on an edge (offset by half a side); triangles point up.
        offset = math.pi / 4 if shape == "square" else math.pi / 2
        radii = [r] * sides
        angles = [offset + 2 * math.pi * k / sides for k in range(sides)]
    # Image y grows downwards, so "up" is minus sine.
    return [(cx + q * math.cos(a + angle), cy - q * math.sin(a + angle)) for q, a in zip(radii, angles)]


def _shape_mask(shape: str, side: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        # Triangles look smaller than their circumscribed circle; enlarge them to a comparable area.
        scale = 1.15 if shape == "triangle" else 1.0
        draw.polygon(_polygon(shape, cx, cy, r * scale, angle), fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _pattern_mask(pattern: str, side: int, angle: float, rng: np.random.Generator) -> np.ndarray:
    """1 where the pattern's second colour goes, in coordinates rotated with the object."""
    if pattern == "plain":
        return np.zeros((side, side), dtype=np.float32)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    u = xs * math.cos(angle) + ys * math.sin(angle)
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    phase_u, phase_v = rng.uniform(0, 1, size=2)
    if pattern == "striped":
        period = side * rng.uniform(0.13, 0.17)
        return ((u / period + phase_u) % 1.0 < 0.5).astype(np.float32)
    if pattern == "checkered":
        cell = side * rng.uniform(0.11, 0.14)
        return ((np.floor(u / cell + phase_u) + np.floor(v / cell + phase_v)) % 2).astype(np.float32)
    spacing = side * rng.uniform(0.15, 0.19)
    du = (u / spacing + phase_u) % 1.0 - 0.5
    dv = (v / spacing + phase_v) % 1.0 - 0.5
    return (du**2 + dv**2 < 0.28**2).astype(np.float32)


def _background(side: int, rng: np.random.Generator) -> np.ndarray:
    """Muted, greyish backgrounds (flat, gradient or blotchy), unlike the saturated object colours."""

    def muted() -> np.ndarray:
        grey = rng.uniform(0.28, 0.72)
        return np.clip(grey + rng.uniform(-0.12, 0.12, size=3), 0, 1)

    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(muted(), (side, side, 3)).copy()
    if kind == 1:
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:side, 0:side] / (side - 1)
        t = (xs * math.cos(angle) + ys * math.sin(angle)) - min(0, math.cos(angle)) - min(0, math.sin(angle))
        t = t / (abs(math.cos(angle)) + abs(math.sin(angle)))
        return (1 - t)[..., None] * muted() + t[..., None] * muted()
    coarse = np.stack([muted() for _ in range(16)]).reshape(4, 4, 3)
    blotches = Image.fromarray((coarse * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
    return np.asarray(blotches, dtype=np.float32) / 255.0


def _object_colors(color: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Main colour and the pattern's second colour (a darker or, for dark objects, lighter shade).

    The jitter is wide enough that neighbouring colours (red/orange, blue/purple) occasionally look alike.
    """
    main = np.array(COLORS[color]) * rng.uniform(0.7, 1.1) + rng.uniform(-0.12, 0.12, size=3)
    main = np.clip(main, 0, 1)
    if color == "black":
        second = np.full(3, rng.uniform(0.5, 0.6))
    elif color == "white":
        second = np.full(3, rng.uniform(0.35, 0.45))
    else:
        second = main * rng.uniform(0.4, 0.5)
    return main, second


def render(label: int, index: int, stream: str = "train", seed: int = 0, size: int = 32, clutter: int = 3,
           fog: bool = False) -> Image.Image:
    """Image `index` of class `label` from `stream` of the world with `seed`, as a size x size RGB image.

    Up to `clutter` small plain shapes of any colour sit behind the object; the object itself may be partly
    transparent or cut by the image border. With `fog` a grey haze washes out contrast and colour (the benchmark's
    camera, see datasets/attribute_world.py). Pixel noise of varying strength is added last.
    """
    if not 0 <= label < len(CLASSES):
        raise UserError(f"Attribute-world label {label} is out of range; there are {len(CLASSES)} classes.")
    if size < 16:
        raise UserError(f"Attribute-world images need size >= 16 to show their patterns; got {size}.")
    cls = CLASSES[label]
    rng = image_rng(seed, stream, label, index)
    side = size * _SUPERSAMPLE
    background = Image.fromarray((_background(size, rng) * 255).astype(np.uint8))
    canvas = np.asarray(background.resize((side, side), Image.BILINEAR), dtype=np.float32) / 255.0

    for _ in range(rng.integers(clutter + 1)):
        shape = SHAPES[rng.integers(len(SHAPES))]
        r = side * rng.uniform(*_RADIUS["clutter"])
        cx, cy = rng.uniform(0, side, size=2)
        color, _ = _object_colors(list(COLORS)[rng.integers(len(COLORS))], rng)
        mask = _shape_mask(shape, side, cx, cy, r, rng.uniform(0, 2 * math.pi))[..., None]
        canvas = canvas * (1 - mask) + color * mask

    r = side * rng.uniform(*_RADIUS[cls.size])
    cx, cy = rng.uniform(0.8 * r, side - 0.8 * r, size=2)
    angle = math.radians(rng.uniform(-1, 1) * _MAX_ROTATION[cls.shape])
    main, second = _object_colors(cls.color, rng)
    opacity = rng.uniform(0.75, 1.0)
    shape = opacity * _shape_mask(cls.shape, side, cx, cy, r, angle)[..., None]
    pattern = _pattern_mask(cls.pattern, side, angle, rng)[..., None]
    canvas = canvas * (1 - shape) + (main * (1 - pattern) + second * pattern) * shape
    if fog:
        clarity = rng.uniform(0.4, 0.6)
        canvas = canvas * clarity + rng.uniform(0.55, 0.65) * (1 - clarity)

    small = Image.fromarray((canvas * 255).round().astype(np.uint8)).resize((size, size), Image.BOX)
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0, rng.uniform(3, 22), size=(size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))
