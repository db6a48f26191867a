"""read_image reads every image mode PIL opens from a file as the benchmarks' readers intend (Dassl's
`Image.open(path).convert("RGB")`), checked against conversions written out here; an image whose values 8 bits
cannot hold is refused, naming the file, instead of being read clipped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from dassl.utils import read_image
from dassl.utils.errors import UserError

RNG = np.random.default_rng(0)
SIZE = (12, 9)  # width, height: not square, so a rotation would show


def pixels(channels: int, high: int = 256, dtype=np.uint8) -> np.ndarray:
    shape = (SIZE[1], SIZE[0]) + ((channels,) if channels > 1 else ())
    return RNG.integers(0, high, shape).astype(dtype)


def saved(tmp_path: Path, img: Image.Image, fmt: str, **options) -> Path:
    path = tmp_path / f"image.{fmt.lower()}"
    img.save(path, format=fmt, **options)
    return path


def gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=-1).astype(np.uint8)


def palette_lookup(indices: np.ndarray, palette: list[int]) -> np.ndarray:
    return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[indices]


def read(path: Path) -> np.ndarray:
    image = read_image(str(path))
    assert image.mode == "RGB" and image.size == SIZE
    return np.asarray(image).astype(int)


PALETTE = RNG.integers(0, 256, 256 * 3).tolist()


def one_bit(tmp_path):
    bits = pixels(1, 2).astype(bool)
    return saved(tmp_path, Image.fromarray(bits), "PNG"), gray(bits * 255)


def grayscale(tmp_path):
    values = pixels(1)
    return saved(tmp_path, Image.fromarray(values, "L"), "PNG"), gray(values)


def paletted(tmp_path, **options):
    indices = pixels(1)
    img = Image.fromarray(indices, "P")
    img.putpalette(PALETTE)
    return saved(tmp_path, img, "PNG", **options), palette_lookup(indices, PALETTE)


def paletted_with_alpha(tmp_path):
    indices, alpha = pixels(1), pixels(1)
    img = Image.fromarray(np.stack([indices, alpha], -1), "LA")  # the PA bands, made through LA
    pa = Image.merge("PA", img.split())
    pa.putpalette(PALETTE)
    path = saved(tmp_path, pa, "TIFF")
    assert Image.open(path).mode == "PA"
    return path, palette_lookup(indices, PALETTE)


def gray_with_alpha(tmp_path):
    values = pixels(2)
    return saved(tmp_path, Image.fromarray(values, "LA"), "PNG"), gray(values[..., 0])


def rgba(tmp_path):
    values = pixels(4)
    return saved(tmp_path, Image.fromarray(values, "RGBA"), "PNG"), values[..., :3]


def cmyk(tmp_path):
    values = pixels(4).astype(int)
    path = saved(tmp_path, Image.fromarray(values.astype(np.uint8), "CMYK"), "TIFF")
    # Each colour ink, darkened by the black one.
    reference = np.round((255 - values[..., :3]) * (255 - values[..., 3:]) / 255)
    return path, reference


def ycbcr(tmp_path):
    values = pixels(3).astype(float)
    path = saved(tmp_path, Image.fromarray(values.astype(np.uint8), "YCbCr"), "TIFF")
    y, cb, cr = (values[..., i] for i in range(3))
    rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                    y + 1.772 * (cb - 128)], -1)  # JPEG's (BT.601, full range) conversion
    return path, np.clip(np.round(rgb), 0, 255)


def lab(tmp_path):
    rgb = Image.fromarray(pixels(3), "RGB")
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    path = saved(tmp_path, ImageCms.applyTransform(rgb, to_lab), "TIFF")
    to_rgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return path, np.asarray(ImageCms.applyTransform(Image.open(path), to_rgb))


def sixteen_bit_in_eight_bit_range(tmp_path):
    values = pixels(1, 256, np.uint16)
    path = saved(tmp_path, Image.fromarray(values), "PNG")
    assert Image.open(path).mode == "I;16"
    return path, gray(values)


def thirty_two_bit_in_eight_bit_range(tmp_path):
    values = pixels(1, 256, np.int32)
    return saved(tmp_path, Image.fromarray(values, "I"), "TIFF"), gray(values)


def whole_floats_in_eight_bit_range(tmp_path):
    values = pixels(1, 256, np.float32)
    return saved(tmp_path, Image.fromarray(values, "F"), "TIFF"), gray(values)


def animated_gif(tmp_path):
    frames = [pixels(1) for _ in range(3)]
    images = [Image.fromarray(f, "P") for f in frames]
    for img in images:
        img.putpalette(PALETTE)
    path = tmp_path / "image.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    return path, palette_lookup(frames[0], PALETTE)


def multi_page_tiff(tmp_path):
    pages = [pixels(3) for _ in range(2)]
    path = tmp_path / "image.tiff"
    Image.fromarray(pages[0]).save(path, save_all=True, append_images=[Image.fromarray(pages[1])])
    assert Image.open(path).n_frames == 2
    return path, pages[0]


def exif_rotated_jpeg(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display": the readers keep the stored grid
    path = saved(tmp_path, Image.fromarray(pixels(3)), "JPEG", exif=exif)
    with Image.open(path) as img:
        stored = np.asarray(img)
    return path, stored


def rgb_jpeg(tmp_path):
    path = saved(tmp_path, Image.fromarray(pixels(3)), "JPEG")
    with Image.open(path) as img:
        return path, np.asarray(img)


# mode (as PIL opens the file) -> (file, the RGB pixels the readers intend, the largest difference allowed)
READABLE = {
    "1": (one_bit, 0),
    "L": (grayscale, 0),
    "P": (paletted, 0),
    "P-with-transparency": (lambda t: paletted(t, transparency=7), 0),
    "PA": (paletted_with_alpha, 0),
    "LA": (gray_with_alpha, 0),
    "RGBA": (rgba, 0),
    "CMYK": (cmyk, 0),
    "YCbCr": (ycbcr, 1),  # PIL's fixed-point arithmetic rounds a few values the other way
    "LAB": (lab, 0),
    "I;16-within-0-255": (sixteen_bit_in_eight_bit_range, 0),
    "I-within-0-255": (thirty_two_bit_in_eight_bit_range, 0),
    "F-whole-values-within-0-255": (whole_floats_in_eight_bit_range, 0),
    "GIF-first-frame": (animated_gif, 0),
    "TIFF-first-page": (multi_page_tiff, 0),
    "JPEG-EXIF-orientation-not-applied": (exif_rotated_jpeg, 0),
    "RGB-JPEG": (rgb_jpeg, 0),
}


@pytest.mark.parametrize("case", READABLE, ids=list(READABLE))
def test_each_mode_reads_as_its_reference_conversion(tmp_path, case):
    make, tolerance = READABLE[case]
    path, reference = make(tmp_path)
    assert np.abs(read(path) - np.asarray(reference).astype(int)).max() <= tolerance


@pytest.mark.parametrize("case", ["L", "P", "RGB-JPEG"])
def test_the_common_path_is_plain_pil(tmp_path, case):
    """The original's numbers depend on these being read exactly as `Image.open(path).convert("RGB")`."""
    path, _ = READABLE[case][0](tmp_path)
    with Image.open(path) as img:
        assert np.array_equal(np.asarray(read_image(str(path))), np.asarray(img.convert("RGB")))


def sixteen_bit_png(tmp_path):
    return saved(tmp_path, Image.fromarray(pixels(1, 65536, np.uint16)), "PNG")


def sixteen_bit_big_endian_tiff(tmp_path):
    values = pixels(1, 65536, np.uint16)
    path = saved(tmp_path, Image.frombytes("I;16B", SIZE, values.astype(">u2").tobytes()), "TIFF")
    assert Image.open(path).mode == "I;16B"
    return path


def negative_thirty_two_bit(tmp_path):
    return saved(tmp_path, Image.fromarray(pixels(1, 256, np.int32) - 128, "I"), "TIFF")


def unit_floats(tmp_path):
    return saved(tmp_path, Image.fromarray(RNG.random((SIZE[1], SIZE[0])).astype(np.float32), "F"), "TIFF")


REFUSED = {
    "I;16-beyond-255": (sixteen_bit_png, "mode I;16 image with values from"),
    "I;16B-beyond-255": (sixteen_bit_big_endian_tiff, "mode I;16B image with values from"),
    "I-negative": (negative_thirty_two_bit, "mode I image with values from -"),
    "F-in-0-1": (unit_floats, "mode F image with fractional values"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_values_eight_bits_cannot_hold_are_refused_naming_the_file(tmp_path, case):
    make, message = REFUSED[case]
    path = make(tmp_path)
    with pytest.raises(UserError) as caught:
        read_image(str(path))
    text = caught.value.message
    assert text.startswith(f"Cannot read image {path}: it is a {message}") and "save it as an 8-bit image" in text
    assert "\n" not in text


def test_a_buffer_of_another_format_is_no_image(tmp_path):
    path = tmp_path / "image.png"
    buffer = io.BytesIO()
    Image.fromarray(pixels(3)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:40])  # cut short
    with pytest.raises(UserError, match="The file is corrupt or not an image"):
        read_image(str(path))
