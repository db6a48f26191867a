"""The attribute world: renderer, dataset reader, pretraining helpers and the shipped tiny CLIP."""

import json
import math
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clip
from dassl.config import get_cfg_default
from dassl.data.datasets import build_dataset
from dassl.utils.errors import UserError
from datasets import attribute_world as world
from datasets.attribute_world import AttributeWorld, generate_world
from datasets.attribute_world_render import CLASSES, COLORS, PATTERNS, SHAPES, SIZES, render
from tools import pretrain_tiny_clip as pretrain

CHECKPOINT = Path(__file__).resolve().parents[1] / pretrain.DEFAULT_OUTPUT
SMALL_WORLD = {"train": 4, "val": 2, "test": 2}
HALF = math.ceil(len(CLASSES) / 2)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32).reshape(-1, 3) / 255.0


def palette_counts(image) -> np.ndarray:
    """Pixels per palette colour, each pixel going to its nearest reference (palette or a background grey)."""
    palette = np.array(list(COLORS.values()))
    references = np.concatenate([palette, [[g] * 3 for g in (0.3, 0.4, 0.5, 0.6, 0.7)]])
    nearest = ((pixels(image)[:, None] - references[None]) ** 2).sum(-1).argmin(1)
    return np.bincount(nearest, minlength=len(references))[: len(palette)]


def make_cfg(root, shots=-1, subsample="all", seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "AttributeWorld"
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return cfg


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_world(str(root / "attribute_world"), per_class=SMALL_WORLD)
    return root


# --- classes and renderer ---------------------------------------------------------------------------------------

def test_class_table_is_well_formed_and_balanced():
    assert len(CLASSES) == 32
    assert len({c.name for c in CLASSES}) == len({c.folder for c in CLASSES}) == 32
    assert len({(c.color, c.shape, c.size, c.pattern) for c in CLASSES}) == 32
    for c in CLASSES:
        assert (c.color in COLORS, c.shape in SHAPES, c.size in SIZES, c.pattern in PATTERNS) == (True,) * 4
    for half in (CLASSES[:HALF], CLASSES[HALF:]):
        assert {c.color for c in half} == set(COLORS)
        assert {c.shape for c in half} == set(SHAPES)
    # Colour alone does not name a class, and neither does shape.
    assert max(Counter(c.color for c in CLASSES).values()) > 1
    assert max(Counter(c.shape for c in CLASSES).values()) > 1


def test_render_is_deterministic_and_streams_differ():
    image = np.asarray(render(3, 5, "train", seed=0, size=32))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image, np.asarray(render(3, 5, "train", seed=0, size=32)))
    for other in (render(3, 5, "train", seed=1), render(3, 5, "test"), render(3, 6, "train"), render(4, 5, "train")):
        assert not np.array_equal(image, np.asarray(other))
    assert render(0, 0, size=48).size == (48, 48)


def test_fog_washes_out_contrast_but_keeps_the_scene():
    contrast = {fog: np.mean([pixels(render(label, 2, "test", fog=fog)).std(axis=0).mean() for label in range(8)])
                for fog in (False, True)}
    assert contrast[True] < 0.75 * contrast[False]
    assert np.array_equal(np.asarray(world.benchmark_image(5, "test", 2)), np.asarray(render(5, 2, "test", fog=True)))


def test_render_rejects_bad_arguments():
    with pytest.raises(UserError, match="stream"):
        render(0, 0, "holdout")
    with pytest.raises(UserError, match="out of range"):
        render(len(CLASSES), 0)
    with pytest.raises(UserError, match="size"):
        render(0, 0, size=8)


def test_images_show_their_colour_and_size():
    dominant_ok, area = 0, {"small": [], "large": []}
    for label, cls in enumerate(CLASSES):
        for index in range(6):
            counts = palette_counts(render(label, index, "test"))
            dominant_ok += list(COLORS)[counts.argmax()] == cls.color
            area[cls.size].append(counts.sum())
    assert dominant_ok / (6 * len(CLASSES)) > 0.75  # clutter and shading blur a few; a wrong colour gives ~1/8
    assert np.mean(area["large"]) > 1.5 * np.mean(area["small"])


# --- dataset reader -----------------------------------------------------------------------------------------------

def test_generation_writes_layout_and_split(small_world):
    dataset_dir = small_world / "attribute_world"
    split = json.loads((dataset_dir / world.SPLIT_FILE).read_text())
    for stream, count in SMALL_WORLD.items():
        assert len(split[stream]) == count * len(CLASSES)
        for relpath, label, classname in split[stream]:
            assert classname == CLASSES[label].name
            assert relpath.startswith(CLASSES[label].folder + "/")
            assert (dataset_dir / "images" / relpath).is_file()
    stored = np.asarray(Image.open(dataset_dir / "images" / split["test"][0][0]))
    assert np.array_equal(stored, np.asarray(world.benchmark_image(0, "test", 0)))
    assert [p.name for p in dataset_dir.iterdir() if p.name.startswith(".")] == []


def test_reader_reuses_the_generated_world(small_world, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the world was generated again")

    monkeypatch.setattr(world, "render", fail)
    data = build_dataset(make_cfg(small_world))
    assert isinstance(data, AttributeWorld)
    assert data.num_classes == 32 and data.classnames == [c.name for c in CLASSES]
    assert (len(data.train_x), len(data.val), len(data.test)) == (4 * 32, 2 * 32, 2 * 32)


def test_reader_base_and_new_halves(small_world):
    random.seed(1)
    base = build_dataset(make_cfg(small_world, shots=2, subsample="base"))
    random.seed(1)
    new = build_dataset(make_cfg(small_world, shots=2, subsample="new"))
    assert base.classnames == [c.name for c in CLASSES[:HALF]]
    assert new.classnames == [c.name for c in CLASSES[HALF:]]
    assert len(base.train_x) == 2 * HALF and len(new.test) == 2 * (len(CLASSES) - HALF)
    assert (small_world / "attribute_world" / "split_fewshot" / "shot_2-seed_1.json").is_file()


def test_interrupted_generation_leaves_nothing_trusted(tmp_path, monkeypatch):
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    monkeypatch.setattr(world, "render", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_world(str(tmp_path / "attribute_world"), per_class=SMALL_WORLD)
    assert os.listdir(tmp_path / "attribute_world") == []

    monkeypatch.setattr(world, "render", render)
    generate_world(str(tmp_path / "attribute_world"), per_class={"train": 1, "val": 1, "test": 1})
    assert (tmp_path / "attribute_world" / world.SPLIT_FILE).is_file()
    assert len(os.listdir(tmp_path / "attribute_world" / "images")) == 32


# --- pretraining helpers and the shipped tiny CLIP ----------------------------------------------------------------

def test_captions_and_their_claims():
    assert pretrain.caption(pretrain.EVAL_TEMPLATE, CLASSES[12]) == "a photo of a amethyst."  # verbatim CoOp prompt
    assert pretrain.caption("a {color} {shape}.", CLASSES[2]) == "an orange circle."
    assert pretrain.claims("a {name}, which is {color} and {shape_adjective}.") == {"name", "color", "shape"}
    tokens, agree = pretrain.caption_tables()
    assert tokens.shape[:2] == (len(pretrain.TEMPLATES), len(CLASSES)) and tokens.shape[2] < 77
    assert agree.shape == (len(pretrain.TEMPLATES), len(CLASSES), len(CLASSES))
    assert bool(agree.diagonal(dim1=1, dim2=2).all())
    # agree[t, i, j]: caption t of class j also describes class i.
    color_shape = pretrain.TEMPLATES.index("a {color} {shape}.")
    tomato, tangerine, ladybug = (next(i for i, c in enumerate(CLASSES) if c.name == n)
                                  for n in ("tomato", "tangerine", "ladybug"))
    assert agree[color_shape, ladybug, tomato]  # a ladybug is also "a red circle"
    assert not agree[color_shape, tangerine, tomato]
    assert not agree[pretrain.TEMPLATES.index(pretrain.EVAL_TEMPLATE), ladybug, tomato]


def test_pretraining_refuses_to_save_an_untrained_model(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "IMAGES_PER_CLASS", SMALL_WORLD)  # evaluate on a few images only
    output = tmp_path / "tiny.pt"
    with pytest.raises(SystemExit, match="below 3x chance"):
        pretrain.main(["--steps", "1", "--batch-size", "4", "--images-per-class", "1", "--log-every", "1000",
                       "--threads", "1", "--output", str(output)])
    assert list(tmp_path.iterdir()) == []


def test_shipped_tiny_clip_knows_the_world():
    assert CHECKPOINT.is_file(), f"missing {CHECKPOINT}; run tools/pretrain_tiny_clip.py"
    assert CHECKPOINT.stat().st_size < 25 * 2**20
    model, _ = clip.load(str(CHECKPOINT), device="cpu")
    assert model.visual.input_resolution == world.IMAGE_SIZE
    base, new = pretrain.base_new_accuracy(model, "test", 6)
    assert min(base, new) >= 3 / HALF
