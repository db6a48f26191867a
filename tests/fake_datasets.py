"""Tiny copies of the benchmark folder layouts (real file formats, a few 8x8 images per class) for the tests.

Every builder writes one dataset under ``root`` and returns the class names the reader should report, in label
order. Folder-split datasets get 6 images per class (3 train / 1 val / 2 test); datasets with an official
trainval list get 5 trainval images (4 train / 1 val) and 2 test images per class.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg()
PER_CLASS = 6  # images per class in folder-split datasets
TRAINVAL, TEST = 5, 2  # images per class in datasets with official lists

# The first five ImageNet classes, as listed in classnames.txt.
IMAGENET = {
    "n01440764": "tench",
    "n01443537": "goldfish",
    "n01484850": "great white shark",
    "n01491361": "tiger shark",
    "n01494475": "hammerhead shark",
}


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(JPEG)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def folder_tree(image_dir: Path, folders: list[str], per_class: int = PER_CLASS) -> None:
    for folder in folders:
        for i in range(per_class):
            write_image(image_dir / folder / f"{folder}_{i:04d}.jpg")


def caltech101(root: Path) -> list[str]:
    folders = ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes", "airplanes", "car_side"]
    folder_tree(root / "caltech-101" / "101_ObjectCategories", folders)
    return ["face", "leopard", "motorbike", "airplane", "car_side"]


def dtd(root: Path) -> list[str]:
    names = ["banded", "blotchy", "braided", "bubbly", "bumpy"]
    folder_tree(root / "dtd" / "images", names)
    return names


def food101(root: Path) -> list[str]:
    names = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare"]
    folder_tree(root / "food-101" / "images", names)
    return names


def eurosat(root: Path) -> list[str]:
    folder_tree(root / "eurosat" / "2750", ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "SeaLake"])
    return ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Sea or Lake"]


def oxford_pets(root: Path) -> list[str]:
    breeds = ["Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "Bengal"]
    base = root / "oxford_pets"
    lists = {"trainval": [], "test": []}
    for label, breed in enumerate(breeds, start=1):
        species = 1 if breed[0].isupper() else 2  # cats are capitalised in the real data
        for i in range(TRAINVAL + TEST):
            name = f"{breed}_{i + 1}"
            write_image(base / "images" / f"{name}.jpg")
            lists["trainval" if i < TRAINVAL else "test"].append(f"{name} {label} {species} {i + 1}")
    for part, lines in lists.items():
        write_lines(base / "annotations" / f"{part}.txt", lines)
    return [b.lower() for b in breeds]


def stanford_cars(root: Path) -> list[str]:
    models = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012", "BMW M3 Coupe 2012",
              "Bentley Mulsanne Sedan 2011"]
    base = root / "stanford_cars"
    for folder, count, mat in [("cars_train", TRAINVAL, base / "devkit" / "cars_train_annos.mat"),
                               ("cars_test", TEST, base / "cars_test_annos_withlabels.mat")]:
        annos = np.zeros((1, count * len(models)), dtype=[("fname", "O"), ("class", "O")])
        for i in range(annos.shape[1]):
            fname = f"{i + 1:05d}.jpg"
            write_image(base / folder / fname)
            annos[0, i] = (fname, np.array([[i % len(models) + 1]], dtype=np.uint8))
        mat.parent.mkdir(parents=True, exist_ok=True)
        savemat(mat, {"annotations": annos})
    names = np.empty((1, len(models)), dtype=object)
    names[0, :] = models
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    return [" ".join([m.split(" ")[-1], *m.split(" ")[:-1]]) for m in models]


def oxford_flowers(root: Path) -> list[str]:
    names = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold"]
    base = root / "oxford_flowers"
    labels = [i % len(names) + 1 for i in range(PER_CLASS * len(names))]  # classes interleaved, as in the real file
    for i in range(len(labels)):
        write_image(base / "jpg" / f"image_{i + 1:05d}.jpg")
    savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    (base / "cat_to_name.json").write_text(json.dumps({str(i + 1): n for i, n in enumerate(names)}))
    return names


def fgvc_aircraft(root: Path) -> list[str]:
    variants = ["707-320", "727-200", "A300B4", "Cessna 172", "F-16A/B"]
    base = root / "fgvc_aircraft"
    write_lines(base / "variants.txt", variants)
    image_id = 1000000
    for part, count in [("train", 3), ("val", 2), ("test", 2)]:
        lines = []
        for variant in variants:
            for _ in range(count):
                image_id += 1
                write_image(base / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {variant}")
        write_lines(base / f"images_variant_{part}.txt", lines)
    return variants


def sun397(root: Path) -> list[str]:
    categories = ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop", "b/ballroom", "c/campus"]
    base = root / "sun397"
    write_lines(base / "ClassName.txt", ["/" + c for c in categories])
    lists = {"Training_01.txt": [], "Testing_01.txt": []}
    for category in categories:
        for i in range(TRAINVAL + TEST):
            imname = f"{category}/sun_{i:04d}.jpg"
            write_image(base / "SUN397" / imname)
            lists["Training_01.txt" if i < TRAINVAL else "Testing_01.txt"].append("/" + imname)
    for name, lines in lists.items():
        write_lines(base / name, lines)
    return ["abbey", "outdoor apartment_building", "shop bakery", "ballroom", "campus"]


def ucf101(root: Path) -> list[str]:
    actions = ["ApplyEyeMakeup", "BabyCrawling", "PlayingDaf", "Skijet", "YoYo"]
    base = root / "ucf101"
    write_lines(base / "ucfTrainTestlist" / "classInd.txt", [f"{i + 1} {a}" for i, a in enumerate(actions)])
    renamed = ["Apply_Eye_Makeup", "Baby_Crawling", "Playing_Daf", "Skijet", "Yo_Yo"]
    lists = {"trainlist01.txt": [], "testlist01.txt": []}
    for label, (action, folder) in enumerate(zip(actions, renamed), start=1):
        for g in range(TRAINVAL + TEST):
            video = f"v_{action}_g{g + 1:02d}_c01"
            write_image(base / "UCF-101-midframes" / folder / f"{video}.jpg")
            if g < TRAINVAL:
                lists["trainlist01.txt"].append(f"{action}/{video}.avi {label}")
            else:
                lists["testlist01.txt"].append(f"{action}/{video}.avi")
    for name, lines in lists.items():
        write_lines(base / "ucfTrainTestlist" / name, lines)
    return renamed


def image_folder(root: Path) -> list[str]:
    names = ["apple", "cat", "dog", "sea_lion", "zebra"]
    folder_tree(root, names)
    (root / "README.txt").write_text("my classes\n")
    return names


def write_classnames(path: Path, order: list[str] | None = None) -> None:
    """classnames.txt with the five ImageNet classes (in ``order`` if given)."""
    write_lines(path, [f"{wnid} {IMAGENET[wnid]}" for wnid in order or IMAGENET])


def imagenet(root: Path) -> list[str]:
    base = root / "imagenet"
    # File order differs from the folder order on purpose: labels must follow the sorted folder names.
    write_classnames(base / "classnames.txt", order=list(reversed(IMAGENET)))
    folder_tree(base / "images" / "train", list(IMAGENET), per_class=4)
    folder_tree(base / "images" / "val", list(IMAGENET), per_class=2)
    return list(IMAGENET.values())


def imagenetv2(root: Path, subfolder: bool = True) -> list[str]:
    base = root / "imagenetv2"
    write_classnames(base / "classnames.txt")
    image_dir = base / "imagenetv2-matched-frequency-format-val" if subfolder else base
    folder_tree(image_dir, [str(i) for i in range(len(IMAGENET))], per_class=2)
    return list(IMAGENET.values())


def imagenet_sketch(root: Path, image_dir: str = "sketch") -> list[str]:
    base = root / "imagenet-sketch"
    write_classnames(base / "classnames.txt")
    folder_tree(base / image_dir, list(IMAGENET), per_class=2)
    return list(IMAGENET.values())


# ImageNet-A/R cover a subset of the 1000 classes: here 3 of the 5.
SUBSET = ["n01443537", "n01484850", "n01494475"]


def imagenet_subset(root: Path, dataset_dir: str, image_dir: str) -> list[str]:
    base = root / dataset_dir
    write_classnames(base / "classnames.txt")
    folder_tree(base / image_dir, SUBSET, per_class=2)
    (base / image_dir / "README.txt").write_text("200 classes of ImageNet\n")
    return [IMAGENET[w] for w in SUBSET]


def imagenet_a(root: Path) -> list[str]:
    return imagenet_subset(root, "imagenet-adversarial", "imagenet-a")


def imagenet_r(root: Path) -> list[str]:
    return imagenet_subset(root, "imagenet-rendition", "imagenet-r")


# DATASET.NAME -> builder, for the readers with a train / val / test split.
SPLIT_BUILDERS = {
    "Caltech101": caltech101,
    "OxfordPets": oxford_pets,
    "StanfordCars": stanford_cars,
    "OxfordFlowers": oxford_flowers,
    "Food101": food101,
    "FGVCAircraft": fgvc_aircraft,
    "SUN397": sun397,
    "DescribableTextures": dtd,
    "EuroSAT": eurosat,
    "UCF101": ucf101,
    "ImageFolder": image_folder,
}
