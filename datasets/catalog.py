"""The one table of what the project knows about each dataset, beyond how its files are read.

A row names the dataset three ways (the key of its config file and output folders, the registered reader that
`DATASET.NAME` selects, the label of the result tables) and holds the paper's knowledge about it: the zero-shot
template, the attributes ATPrompt selected and the bases the search chose them from, where AnchorOPT's anchor and
class descriptions are, and the zip of it the authors share. Trainers, the run scripts, the result tools and the
download tool read it from here; a method's own per-dataset hyper-parameters are in its module (its script
families, trainers/families.py).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from dassl.utils.errors import UserError


@dataclass(frozen=True)
class DatasetInfo:
    key: str  # configs/datasets/<key>.yaml and output/<key>/...
    name: str  # DATASET.NAME: the registered reader
    display: str  # its label in the result tables
    template: str  # zero-shot prompt; "{}" is the class name
    attributes: tuple[str, ...] = ()  # ATPrompt's selected attributes (the paper's searched result)
    bases: tuple[str, ...] = ()  # the candidates the attribute search chose from
    role: str = "other"  # "benchmark" (base-to-novel), "variant" (ImageNet's domain shifts), "other"
    imagenet_classes: bool = False  # its classes are ImageNet's (or a subset): an ImageNet model's head fits them
    # AnchorOPT: the folder of its anchor under anchor_weights/ and its class-description file under templates/,
    # as the original names them ("" = none: give TRAINER.ANCHOROPT.ANCHOR_WEIGHTS / DESCRIPTIONS).
    anchor_folder: str = ""
    descriptions: str = ""
    # Its zip in the authors' Hugging Face repository (ARCHIVE_REPO), with the split file inside; "" = not there
    # (ImageNet: its licence allows no copies). tools/download_datasets.py fetches and unpacks it.
    archive: str = ""


_IMAGENET_TEMPLATE = "a photo of a {}."
_IMAGENET_ATTRIBUTES = ("color", "shape")
_IMAGENET_BASES = ("color", "size", "shape", "habitat", "behavior")

_IMAGENET_ANCHOR = {"anchor_folder": "ImageNet", "descriptions": "imagenet_prompts_full.json"}

DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo("imagenet", "ImageNet", "ImageNet", _IMAGENET_TEMPLATE, _IMAGENET_ATTRIBUTES, _IMAGENET_BASES,
                "benchmark", imagenet_classes=True, **_IMAGENET_ANCHOR),
    DatasetInfo("caltech101", "Caltech101", "Caltech101", "a photo of a {}.", ("shape", "size"),
                ("shape", "color", "material", "function", "size"), "benchmark",
                archive="caltech-101.zip", anchor_folder="Caltech101", descriptions="cal_prompts_full.json"),
    DatasetInfo("oxford_pets", "OxfordPets", "OxfordPets", "a photo of a {}, a type of pet.", ("playfulness", "energy"),
                ("loyalty", "affection", "playfulness", "energy", "intelligence"), "benchmark",
                archive="oxford_pets.zip", anchor_folder="OxfordPets", descriptions="pets_prompts_full.json"),
    DatasetInfo("stanford_cars", "StanfordCars", "StanfordCars", "a photo of a {}.", ("luxury",),
                ("design", "engine", "performance", "luxury", "color"), "benchmark",
                archive="stanford_cars.zip", anchor_folder="StanfordCars", descriptions="cars_prompts_full.json"),
    # The original ATPrompt's zero-shot code has "a photo of a {}" here; CoOp's (and so the zero-shot numbers every
    # paper compares with) has the flower suffix, which is what docs/REPRODUCE.md reproduces.
    DatasetInfo("oxford_flowers", "OxfordFlowers", "OxfordFlowers", "a photo of a {}, a type of flower.",
                ("color", "habitat", "growth"), ("color", "flower", "habitat", "growth", "season"), "benchmark",
                archive="oxford_flowers.zip", anchor_folder="OxfordFlowers", descriptions="flower_prompts_full.json"),
    DatasetInfo("food101", "Food101", "Food101", "a photo of {}, a type of food.", ("flavor", "preparation"),
                ("flavor", "texture", "origin", "ingredients", "preparation"), "benchmark",
                archive="food101.zip", anchor_folder="Food101", descriptions="food_prompts_full.json"),
    DatasetInfo("fgvc_aircraft", "FGVCAircraft", "FGVCAircraft", "a photo of a {}, a type of aircraft.",
                ("design", "range"), ("design", "capacity", "range", "engines", "liveries"), "benchmark",
                archive="fgvc_aircraft.zip", anchor_folder="FGVCAircraft", descriptions="airplane_prompts_full.json"),
    DatasetInfo("sun397", "SUN397", "SUN397", "a photo of a {}.", ("function",),
                ("architecture", "environment", "structure", "design", "function"), "benchmark",
                archive="sun397.zip", anchor_folder="SUN397", descriptions="sun_prompts_full.json"),
    DatasetInfo("dtd", "DescribableTextures", "DTD", "{} texture.", ("pattern", "color", "design"),
                ("pattern", "texture", "color", "design", "structure"), "benchmark",
                archive="dtd.zip", anchor_folder="DTD", descriptions="texture_prompts_full.json"),
    DatasetInfo("eurosat", "EuroSAT", "EuroSAT", "a centered satellite photo of {}.", ("habitat",),
                ("habitat", "foliage", "infrastructure", "terrain", "watercourse"), "benchmark",
                archive="eurosat.zip", anchor_folder="EuroSAT", descriptions="eurosat_prompts_full.json"),
    DatasetInfo("ucf101", "UCF101", "UCF101", "a photo of a person doing {}.", ("precision",),
                ("precision", "coordination", "technique", "strength", "control"), "benchmark",
                archive="ucf101.zip", anchor_folder="UCF101", descriptions="ucf_prompts_full.json"),
    # Models evaluated on ImageNet's variants are trained on ImageNet, so they share its attributes and anchor.
    DatasetInfo("imagenetv2", "ImageNetV2", "ImageNetV2", _IMAGENET_TEMPLATE, _IMAGENET_ATTRIBUTES, _IMAGENET_BASES,
                "variant", imagenet_classes=True, archive="imagenetv2.zip", **_IMAGENET_ANCHOR),
    DatasetInfo("imagenet_sketch", "ImageNetSketch", "ImageNet-Sketch", _IMAGENET_TEMPLATE, _IMAGENET_ATTRIBUTES,
                _IMAGENET_BASES, "variant", imagenet_classes=True, archive="imagenet-sketch.zip", **_IMAGENET_ANCHOR),
    DatasetInfo("imagenet_a", "ImageNetA", "ImageNet-A", _IMAGENET_TEMPLATE, _IMAGENET_ATTRIBUTES, _IMAGENET_BASES,
                "variant", imagenet_classes=True, archive="imagenet-adversarial.zip", **_IMAGENET_ANCHOR),
    DatasetInfo("imagenet_r", "ImageNetR", "ImageNet-R", _IMAGENET_TEMPLATE, _IMAGENET_ATTRIBUTES, _IMAGENET_BASES,
                "variant", imagenet_classes=True, archive="imagenet-rendition.zip", **_IMAGENET_ANCHOR),
    # Its descriptions are generated from the objects' definitions (datasets/attribute_world.py).
    DatasetInfo("attribute_world", "AttributeWorld", "AttributeWorld", "a photo of a {}.", ("color", "shape"),
                ("color", "shape", "size", "pattern", "texture"),
                anchor_folder="AttributeWorld", descriptions="world_prompts_full.json"),
    DatasetInfo("image_folder", "ImageFolder", "ImageFolder", "a photo of a {}."),
)

# The authors' copies of the datasets: a model repository on the Hugging Face hub (huggingface.co/<repo>, not
# huggingface.co/datasets/<repo>). The archive names above come from public download scripts for this repository,
# not from its file list; tools/download_datasets.py names the file and the fix when the hub has no such file.
ARCHIVE_REPO = "zhengli97/prompt_learning_dataset"
ARCHIVE_REPO_TYPE = "model"

XD_SOURCE = "imagenet"  # cross-dataset and domain-generalisation models are trained here
DEFAULT_TEMPLATE = "a photo of a {}."

_BY_KEY = {info.key: info for info in DATASETS}
_BY_NAME = {info.name: info for info in DATASETS}


def by_name(name: str) -> DatasetInfo | None:
    """The row of a registered reader (DATASET.NAME), or None for a dataset the table does not know."""
    return _BY_NAME.get(name)


def by_key(key: str) -> DatasetInfo:
    """The row of a config key (``caltech101``); an unknown key is an error that lists the close and valid ones."""
    if key in _BY_KEY:
        return _BY_KEY[key]
    close = [k for k in _BY_KEY if k.lower() == key.lower()] or difflib.get_close_matches(key, _BY_KEY, n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise UserError(f"unknown dataset '{key}'.{hint} Valid datasets: {', '.join(_BY_KEY)}")


def lookup(name_or_key: str) -> DatasetInfo | None:
    """The row of a config key, a registered name or a display label (case-insensitive), or None."""
    for info in DATASETS:
        if name_or_key.lower() in (info.key, info.name.lower(), info.display.lower()):
            return info
    return None


def by_role(role: str) -> list[DatasetInfo]:
    return [info for info in DATASETS if info.role == role]


def template(name: str) -> str:
    """The zero-shot template of DATASET.NAME ("a photo of a {}." for datasets the table does not know)."""
    info = by_name(name)
    return info.template if info else DEFAULT_TEMPLATE


def paper_words(name: str, kind: str, fix: str) -> list[str]:
    """The paper's `kind` ("attributes" or "bases") for DATASET.NAME; a dataset without any is an error whose
    message says `fix` (how to give them) and which datasets have defaults."""
    info = by_name(name)
    words = list(getattr(info, kind)) if info else []
    if not words:
        known = [i.name for i in DATASETS if getattr(i, kind)]
        raise UserError(f"dataset '{name}' has no {kind} from the paper: {fix} "
                        f"(defaults exist for: {', '.join(known)})")
    return words
