"""AttributeWorld: a procedurally generated benchmark of 32 objects defined by colour, shape, size and pattern.

It needs no download: on first use the images and the split file are generated under
``<DATASET.ROOT>/attribute_world/``; from then on they are read like any other benchmark (few-shot cache, base/new
subsampling). The classes and the renderer live in ``datasets/attribute_world_render.py``.

Like a real benchmark, its photos come from one camera whose look differs from the pretraining data: they are all
taken in fog. The tiny CLIP knows every object but has never seen fog, so zero-shot accuracy drops, and that gap
is what few-shot prompt learning can win back.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from PIL import Image

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .attribute_world_render import CLASSES, SHAPE_ADJECTIVES, render
from .splits import SplitDataset, save_split

WORLD_SEED = 0
IMAGE_SIZE = 32
IMAGES_PER_CLASS = {"train": 24, "val": 8, "test": 32}
SPLIT_FILE = "split_zhou_AttributeWorld.json"


# How its descriptions phrase a class (AnchorOPT's stage I): sentences in the words the tiny CLIP was trained on,
# each naming the object and some of its attributes, as an LLM's descriptions of a real class would.
DESCRIPTION_TEMPLATES = (
    "a {name}, which is {color} and {shape_adjective}.",
    "a {color} colored {shape_adjective} {name}.",
    "a {name} with {color} color and {shape} shape.",
    "a {size} {pattern} {color} {shape} that looks like a {name}.",
    "a {size} {color} {pattern} {shape}.",
    "a {color} {pattern} {shape}.",
    "a {size} {name}.",
    "a {pattern} {name}.",
)


def class_descriptions() -> dict[str, list[str]]:
    """`{class name: [sentence, ...]}` for every object, in the format of AnchorOPT's description files (the
    committed templates/world_prompts_full.json is this, written with `json.dump(..., indent=4)`)."""
    return {cls.name: [re.sub(r"\ba (?=[aeiou])", "an ", t.format(
        name=cls.name, color=cls.color, shape=cls.shape, size=cls.size, pattern=cls.pattern,
        shape_adjective=SHAPE_ADJECTIVES[cls.shape])) for t in DESCRIPTION_TEMPLATES] for cls in CLASSES}


def benchmark_image(label: int, stream: str, index: int) -> Image.Image:
    """Image ``index`` of class ``label`` in the ``train``, ``val`` or ``test`` split of the benchmark."""
    return render(label, index, stream, WORLD_SEED, IMAGE_SIZE, fog=True)


def image_name(stream: str, index: int) -> str:
    return f"{stream}_{index:03d}.png"


def generate_world(dataset_dir: str, per_class: dict[str, int] | None = None) -> None:
    """Write ``images/<object>/<split>_<n>.png`` and the split file under ``dataset_dir``, unless already done.

    The split file is written last and atomically, so its presence means the world is complete: an interrupted
    run leaves no split file and is generated again from scratch next time.
    """
    split_path = os.path.join(dataset_dir, SPLIT_FILE)
    if os.path.exists(split_path):
        return
    per_class = per_class or IMAGES_PER_CLASS
    image_dir = os.path.join(dataset_dir, "images")
    os.makedirs(dataset_dir, exist_ok=True)
    print(f"Generating the attribute world ({len(CLASSES) * sum(per_class.values())} images) in {dataset_dir}")

    partial = tempfile.mkdtemp(prefix=".images-partial-", dir=dataset_dir)
    try:
        splits = {stream: [] for stream in per_class}
        for label, cls in enumerate(CLASSES):
            os.makedirs(os.path.join(partial, cls.folder))
            for stream, count in per_class.items():
                for index in range(count):
                    relpath = os.path.join(cls.folder, image_name(stream, index))
                    benchmark_image(label, stream, index).save(os.path.join(partial, relpath))
                    splits[stream].append(Datum(os.path.join(image_dir, relpath), label, classname=cls.name))
        if os.path.exists(split_path):  # another process finished the same world first
            shutil.rmtree(partial)
            return
        if os.path.isdir(image_dir):  # images of an interrupted run: untrusted without a split file
            shutil.rmtree(image_dir)
        os.rename(partial, image_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    save_split(splits["train"], splits["val"], splits["test"], split_path, image_dir)


@DATASET_REGISTRY.register()
class AttributeWorld(SplitDataset):
    dataset_dir = "attribute_world"
    image_dir = "images"
    split_file = SPLIT_FILE
    layout = "attribute_world/{images/<object>/<split>_<n>.png, split_zhou_AttributeWorld.json} (generated)"

    def __init__(self, cfg) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        generate_world(os.path.join(root, self.dataset_dir))
        super().__init__(cfg)
