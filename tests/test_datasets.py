"""Dataset readers on tiny fake copies of the real layouts (tests/fake_datasets.py)."""

import json
import math
import os
import random
import shutil
from collections import Counter

import fake_datasets as fake
import pytest

import datasets
from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from dassl.utils import listdir_nohidden
from dassl.utils.errors import UserError
from datasets import splits
from datasets.dtd import DescribableTextures
from datasets.oxford_pets import OxfordPets

ALL_NAMES = ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101", "FGVCAircraft",
             "SUN397", "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2", "ImageNetSketch", "ImageNetA",
             "ImageNetR", "ImageFolder"]
SPLIT_NAMES = list(fake.SPLIT_BUILDERS)


def make_cfg(root, name, shots=-1, seed=1, subsample="all"):
    cfg = get_cfg_default()
    cfg.defrost()
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.SEED = seed
    return cfg


def load(root, name, shots=-1, seed=1, subsample="all"):
    random.seed(seed)  # what set_random_seed does at start-up
    return build_dataset(make_cfg(root, name, shots, seed, subsample))


def triples(items):
    return [(item.impath, item.label, item.classname) for item in items]


def per_class(items):
    return Counter(item.label for item in items)


def split_path(dataset):
    return os.path.join(dataset.dataset_dir, type(dataset).split_file)


def test_every_dataset_is_registered():
    assert datasets.imagenet.ImageNet is DATASET_REGISTRY.get("ImageNet")
    for name in ALL_NAMES:
        assert DATASET_REGISTRY.get(name).__name__ == name


def test_compatibility_aliases():
    assert OxfordPets.read_split is splits.read_split
    assert OxfordPets.save_split is splits.save_split
    assert OxfordPets.split_trainval is splits.split_trainval
    assert OxfordPets.subsample_classes is splits.subsample_classes
    assert DescribableTextures.read_and_split_data is splits.read_and_split_data


@pytest.mark.parametrize("name", SPLIT_NAMES)
def test_split_reader_makes_saves_and_rereads_the_split(tmp_path, name, capsys):
    classnames = fake.SPLIT_BUILDERS[name](tmp_path)
    first = load(tmp_path, name)
    assert first.classnames == classnames and first.num_classes == len(classnames)
    for part in (first.train_x, first.val, first.test):
        assert sorted(per_class(part)) == list(range(len(classnames)))  # every class in every part
        assert all(item.classname == classnames[item.label] for item in part)
        assert all(os.path.isfile(item.impath) for item in part)
    if name == "FGVCAircraft":  # the official lists, no split file
        assert [len(p) for p in (first.train_x, first.val, first.test)] == [15, 10, 10]
        return
    assert os.path.isfile(split_path(first))
    assert "Saved split to" in capsys.readouterr().out

    second = load(tmp_path, name, seed=2)  # a different seed must not matter once the split is saved
    assert "Reading split from" in capsys.readouterr().out
    for a, b in [(first.train_x, second.train_x), (first.val, second.val), (first.test, second.test)]:
        assert triples(a) == triples(b)


@pytest.mark.parametrize("name", SPLIT_NAMES)
def test_split_sizes_follow_the_rounding_rules(tmp_path, name):
    fake.SPLIT_BUILDERS[name](tmp_path)
    data = load(tmp_path, name)
    sizes = {"FGVCAircraft": (3, 2, 2)}.get(name)
    if sizes is None:
        folder_split = name in {"Caltech101", "OxfordFlowers", "Food101", "DescribableTextures", "EuroSAT",
                                "ImageFolder"}
        # 6 images: round(3.0) train, round(1.2) val, rest test; 5 trainval: round(1.0) val, 2 official test.
        sizes = (3, 1, 2) if folder_split else (4, 1, 2)
    for part, size in zip((data.train_x, data.val, data.test), sizes):
        assert set(per_class(part).values()) == {size}


@pytest.mark.parametrize("name", SPLIT_NAMES)
@pytest.mark.parametrize("subsample", ["base", "new"])
def test_base_new_classes_use_the_ceil_rule(tmp_path, name, subsample):
    classnames = fake.SPLIT_BUILDERS[name](tmp_path)
    data = load(tmp_path, name, shots=2, subsample=subsample)
    m = math.ceil(len(classnames) / 2)
    expected = classnames[:m] if subsample == "base" else classnames[m:]
    assert data.classnames == expected
    for part in (data.train_x, data.val, data.test):
        assert sorted(per_class(part)) == list(range(len(expected)))
        assert all(item.classname == expected[item.label] for item in part)


@pytest.mark.parametrize("name", SPLIT_NAMES)
def test_few_shot_draw_is_cached_and_reused(tmp_path, name, capsys):
    fake.SPLIT_BUILDERS[name](tmp_path)
    first = load(tmp_path, name, shots=2, seed=3)
    assert set(per_class(first.train_x).values()) == {2}
    assert all(n <= 2 for n in per_class(first.val).values())  # min(K, 4) per class, or all there is
    cache = os.path.join(first.dataset_dir, "split_fewshot", "shot_2-seed_3.json")
    assert os.path.isfile(cache)
    full = load(tmp_path, name)
    assert triples(first.test) == triples(full.test)  # the test set is never reduced

    # The cache wins over a new draw (an edited one too), and Python's random state ends as after drawing.
    os.rename(cache, cache + ".kept")
    load(tmp_path, name, shots=2, seed=3)  # the split file exists now: only the few shots are drawn
    state_after_drawing = random.getstate()
    os.replace(cache + ".kept", cache)
    cached = json.loads(open(cache).read())
    cached["train"] = cached["train"][::-1]
    with open(cache, "w") as f:
        json.dump(cached, f)
    capsys.readouterr()
    again = load(tmp_path, name, shots=2, seed=3)
    out = capsys.readouterr().out
    assert f"Loading preprocessed few-shot data from {cache}" in out and "Creating a" not in out
    assert triples(again.train_x) == triples(first.train_x)[::-1] and triples(again.val) == triples(first.val)
    assert random.getstate() == state_after_drawing


@pytest.mark.parametrize("name", SPLIT_NAMES)
def test_same_seed_gives_the_same_split_and_shots(tmp_path, name):
    fake.SPLIT_BUILDERS[name](tmp_path)
    runs = []
    for _ in range(2):
        data = load(tmp_path, name, shots=2, seed=5)
        runs.append([triples(p) for p in (data.train_x, data.val, data.test)])
        shutil.rmtree(os.path.join(data.dataset_dir, "split_fewshot"))
        if data.split_file:
            os.remove(split_path(data))
    assert runs[0] == runs[1]


def test_few_shot_draw_follows_the_original_call_order(tmp_path):
    fake.oxford_pets(tmp_path)
    full = load(tmp_path, "OxfordPets")  # makes the split; later runs only read it (no RNG use)
    random.seed(9)
    drawer = DatasetBase()
    expected_train = drawer.generate_fewshot_dataset(full.train_x, num_shots=1)  # train first, then val
    expected_val = drawer.generate_fewshot_dataset(full.val, num_shots=1)
    data = load(tmp_path, "OxfordPets", shots=1, seed=9)
    assert triples(data.train_x) == triples(expected_train) and triples(data.val) == triples(expected_val)


def test_saved_split_has_the_original_format(tmp_path):
    fake.caltech101(tmp_path)
    data = load(tmp_path, "Caltech101")
    with open(split_path(data)) as f:
        text = f.read()
    split = json.loads(text)
    assert text == json.dumps(split, indent=4, separators=(",", ": "))
    entry = split["train"][0]
    assert isinstance(entry[0], str) and isinstance(entry[1], int) and isinstance(entry[2], str)
    assert not os.path.isabs(entry[0]) and entry[0].count("/") == 1  # "<class folder>/<image>"
    assert os.path.join(data.image_dir, entry[0]) == data.train_x[0].impath


def test_stanford_cars_split_paths_are_relative_to_the_dataset_folder(tmp_path):
    fake.stanford_cars(tmp_path)
    base = tmp_path / "stanford_cars"
    entries = {part: [[f"cars_{folder}/{i:05d}.jpg", 0, "2000 AM General Hummer SUV"] for i in (1, 6)]
               for part, folder in [("train", "train"), ("val", "train"), ("test", "test")]}
    (base / "split_zhou_StanfordCars.json").write_text(json.dumps(entries))
    data = load(tmp_path, "StanfordCars")
    assert data.train_x[0].impath == str(base / "cars_train" / "00001.jpg")
    assert data.test[1].impath == str(base / "cars_test" / "00006.jpg")


def test_split_trainval_draws_in_the_original_order():
    labels = [0, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 2, 1]
    items = [Datum(impath=f"{i}.jpg", label=y, classname=str(y)) for i, y in enumerate(labels)]
    random.seed(11)
    train, val = splits.split_trainval(items)

    random.seed(11)
    expected_train, expected_val = [], []
    for label in (0, 1, 2):  # first-appearance order; one shuffle per class
        idxs = [i for i, y in enumerate(labels) if y == label]
        random.shuffle(idxs)
        n_val = round(len(idxs) * 0.2)
        expected_val += [f"{i}.jpg" for i in idxs[:n_val]]
        expected_train += [f"{i}.jpg" for i in idxs[n_val:]]
    assert [x.impath for x in train] == expected_train
    assert [x.impath for x in val] == expected_val


def test_folder_split_draws_in_the_original_order(tmp_path):
    fake.folder_tree(tmp_path, ["b_class", "a_class"], per_class=7)
    random.seed(4)
    train, val, test = splits.read_and_split_data(str(tmp_path), new_cnames={"a_class": "renamed"})

    random.seed(4)
    expected = ([], [], [])
    for category in ["a_class", "b_class"]:  # sorted folders; images in listing order, shuffled once
        images = [os.path.join(tmp_path, category, n) for n in listdir_nohidden(os.path.join(tmp_path, category))]
        random.shuffle(images)
        for part, chunk in zip(expected, (images[:4], images[4:5], images[5:])):  # round(3.5)=4, round(1.4)=1
            part.extend(chunk)
    assert [[x.impath for x in p] for p in (train, val, test)] == [list(p) for p in expected]
    assert {x.classname for x in train if x.label == 0} == {"renamed"}


def test_image_folder_split_is_fixed_and_leaves_the_global_rng_alone(tmp_path):
    fake.image_folder(tmp_path)
    first = load(tmp_path, "ImageFolder", shots=2, seed=7)
    assert os.path.isfile(tmp_path / "split_zhou_ImageFolder.json")
    assert "README.txt" not in first.classnames
    # Same seed, split file now read instead of made: the shots must not change.
    shutil.rmtree(tmp_path / "split_fewshot")
    second = load(tmp_path, "ImageFolder", shots=2, seed=7)
    assert triples(second.train_x) == triples(first.train_x)
    # Another seed makes the same split (after deleting it) but draws other shots.
    os.remove(tmp_path / "split_zhou_ImageFolder.json")
    other = load(tmp_path, "ImageFolder", shots=2, seed=8)
    assert triples(other.test) == triples(first.test)
    assert triples(other.train_x) != triples(first.train_x)


def test_image_folder_with_too_few_images_names_the_class(tmp_path):
    fake.folder_tree(tmp_path, ["cat"], per_class=6)
    fake.folder_tree(tmp_path, ["rare_bird"], per_class=3)
    with pytest.raises(UserError, match="'rare_bird' has only 3 image"):
        load(tmp_path, "ImageFolder")


def test_imagenet_labels_cache_and_protocol(tmp_path, monkeypatch):
    classnames = fake.imagenet(tmp_path)
    full = load(tmp_path, "ImageNet")
    assert full.classnames == classnames  # sorted wnid order, although classnames.txt is reversed
    assert full.val is full.test and len(full.test) == 10 and len(full.train_x) == 20
    assert "great white shark" in full.classnames
    assert os.path.isfile(tmp_path / "imagenet" / "preprocessed.json")

    def no_scan(*args, **kwargs):
        raise AssertionError("the folder listing should come from preprocessed.json")

    monkeypatch.setattr(datasets.imagenet.ImageNet, "read_data", no_scan)
    base = load(tmp_path, "ImageNet", shots=2, subsample="base")
    assert set(per_class(base.train_x).values()) == {2}
    assert base.classnames == classnames[:3]
    assert per_class(base.test) == {0: 2, 1: 2, 2: 2} and base.val is base.test
    assert os.path.isfile(tmp_path / "imagenet" / "split_fewshot" / "shot_2-seed_1.json")


def test_imagenet_rescans_a_listing_whose_images_are_gone(tmp_path):
    fake.imagenet(tmp_path)
    load(tmp_path, "ImageNet")
    # A listing made on another machine: absolute paths that do not exist here.
    stale = {part: [[f"/elsewhere/imagenet/{part}.JPEG", 0, "tench"]] for part in ("train", "test")}
    (tmp_path / "imagenet" / "preprocessed.json").write_text(json.dumps(stale))
    data = load(tmp_path, "ImageNet")
    assert len(data.train_x) == 20 and len(data.test) == 10
    assert all(os.path.isfile(x.impath) for x in data.train_x + data.test)


VARIANT_LAYOUTS = [
    ("ImageNetV2", lambda root: fake.imagenetv2(root, subfolder=True)),
    ("ImageNetV2", lambda root: fake.imagenetv2(root, subfolder=False)),
    ("ImageNetSketch", lambda root: fake.imagenet_sketch(root, "sketch")),
    ("ImageNetSketch", lambda root: fake.imagenet_sketch(root, "images")),
]


@pytest.mark.parametrize("name, build", VARIANT_LAYOUTS)
def test_full_imagenet_variants_accept_both_layouts(tmp_path, name, build):
    classnames = build(tmp_path)
    data = load(tmp_path, name, shots=1, subsample="base")  # both ignored by test-only variants
    assert data.classnames == classnames
    assert data.train_x is data.test and data.val is None and len(data.test) == 10
    assert data.wnids == list(fake.IMAGENET) and data.imagenet_indices == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["ImageNetA", "ImageNetR"])
def test_imagenet_a_r_cover_a_subset_of_classes(tmp_path, name):
    classnames = getattr(fake, {"ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r"}[name])(tmp_path)
    data = load(tmp_path, name, shots=1, subsample="new")
    assert data.classnames == classnames and data.num_classes == 3  # README.txt is not a class
    assert sorted(per_class(data.test)) == [0, 1, 2] and data.train_x is data.test
    assert data.wnids == fake.SUBSET and data.imagenet_indices == [1, 2, 4]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_missing_dataset_folder_names_the_layout(tmp_path, name):
    with pytest.raises(UserError) as err:
        load(tmp_path / "nowhere", name)
    message = str(err.value)
    assert "docs/DATASETS.md" in message and DATASET_REGISTRY.get(name).layout in message


def test_unknown_dataset_name_lists_the_registered_ones(tmp_path):
    with pytest.raises(Exception, match="Caltech101"):
        load(tmp_path, "Caltech102")


@pytest.mark.parametrize("name", ["OxfordPets", "Caltech101"])
def test_missing_images_are_reported_together(tmp_path, name):
    fake.SPLIT_BUILDERS[name](tmp_path)
    data = load(tmp_path, name)  # makes and saves the split
    for item in data.test[:3]:
        os.remove(item.impath)
    with pytest.raises(UserError, match=r"3 of \d+ image files are missing") as err:
        load(tmp_path, name)
    assert data.test[0].impath in str(err.value)


@pytest.mark.parametrize("content, problem", [
    ("{ not json", "not valid JSON"),
    (json.dumps({"train": [], "test": []}), "'train', 'val' and 'test'"),
    (json.dumps({"train": [["a/b.jpg", 0]], "val": [], "test": []}), "entry 0 of 'train'"),
    (json.dumps({"train": [["a/b.jpg", "zero", "cat"]], "val": [], "test": []}), "entry 0 of 'train'"),
])
def test_malformed_split_file_is_named(tmp_path, content, problem):
    fake.dtd(tmp_path)
    path = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    path.write_text(content)
    with pytest.raises(UserError, match=problem) as err:
        load(tmp_path, "DescribableTextures")
    assert str(path) in str(err.value)
