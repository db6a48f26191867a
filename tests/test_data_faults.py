"""Faulty data inputs: each gives one clear UserError naming the input and the fix, or a note and the expected result.

The datasets are the tiny fake layouts of tests/fake_datasets.py.
"""

import errno
import json
import os
import pickle
import random
import shutil

import fake_datasets as fake
import pytest
from test_datasets import load, make_cfg, triples

import datasets
from dassl.data.datasets import DatasetBase, Datum, build_dataset
from dassl.data.identity import listing_checksum
from dassl.utils import tools
from dassl.utils.errors import UserError

DTD_NAMES = ["banded", "blotchy", "braided", "bubbly", "bumpy"]


def dtd_cache(root, shots=2, seed=1):
    return root / "dtd" / "split_fewshot" / f"shot_{shots}-seed_{seed}.json"


def files_under(folder):
    return sorted(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names)


# ---------------------------------------------------------------- 1. damaged pickles of the original code

_PICKLE = pickle.dumps({"train": [Datum("/old/dtd/images/banded/a.jpg", 0, classname="banded")]}, protocol=2)


@pytest.mark.parametrize("blob", [b"", _PICKLE[: len(_PICKLE) // 2], b"not a pickle at all"],
                         ids=["empty", "truncated", "garbage"])
def test_damaged_pickle_cache_is_named_with_the_fix(tmp_path, blob):
    fake.dtd(tmp_path)
    load(tmp_path, "DescribableTextures")  # the split file is there: caches are read
    pkl = dtd_cache(tmp_path).with_suffix(".pkl")
    pkl.parent.mkdir(parents=True)
    pkl.write_bytes(blob)
    with pytest.raises(UserError) as err:
        load(tmp_path, "DescribableTextures", shots=2)
    message = str(err.value)
    assert str(pkl) in message and "delete it" in message and "drawn again" in message


# ---------------------------------------------------------------- 2. JSON caches that do not fit the split

OTHER_IMAGE = os.path.join("images", "banded", "drawn_from_another_split.jpg")
CACHE_EDITS = [  # what entry 0 of the cached train subset becomes, and what the error must say
    ("label out of range", lambda e: [e[0], 9, e[2]], ["label 9", "5 classes"]),
    ("negative label", lambda e: [e[0], -1, e[2]], ["label -1", "5 classes"]),
    ("class name of another label", lambda e: [e[0], 1, "banded"], ["label 1 named 'banded'", "names 'blotchy'"]),
    ("image of another split", lambda e: [OTHER_IMAGE, 0, "banded"], [OTHER_IMAGE, "not among the images"]),
    ("fractional label", lambda e: [e[0], e[1] + 0.5, e[2]], ["entry 0 of 'train'", "integer_label"]),
    ("boolean label", lambda e: [e[0], True, e[2]], ["entry 0 of 'train'", "integer_label"]),
    ("class name not a string", lambda e: [e[0], e[1], 7], ["entry 0 of 'train'", "classname"]),
]


@pytest.mark.parametrize("edit, expected", [row[1:] for row in CACHE_EDITS], ids=[row[0] for row in CACHE_EDITS])
def test_json_cache_that_does_not_fit_the_split_is_refused_when_loaded(tmp_path, edit, expected):
    fake.dtd(tmp_path)
    load(tmp_path, "DescribableTextures", shots=2)
    cache = dtd_cache(tmp_path)
    data = json.loads(cache.read_text())
    data["train"][0] = edit(data["train"][0])
    cache.write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        load(tmp_path, "DescribableTextures", shots=2)
    message = str(err.value)
    assert str(cache) in message and "delete it" in message.lower()
    for part in expected:
        assert part in message


def test_an_original_pickle_naming_the_images_through_another_root_is_used(tmp_path):
    fake.dtd(tmp_path / "data")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    first = load(tmp_path / "data", "DescribableTextures", shots=2)
    cache = dtd_cache(tmp_path / "data")
    cache.unlink()
    cache.with_suffix(".pkl").write_bytes(pickle.dumps({"train": first.train_x, "val": first.val}, protocol=2))
    again = load(tmp_path / "link", "DescribableTextures", shots=2)
    assert triples(again.train_x) == triples(first.train_x)  # under data/, as the pickle names them


def test_caches_of_an_earlier_split_are_drawn_again_with_a_new_split(tmp_path, capsys):
    fake.dtd(tmp_path)
    first = load(tmp_path, "DescribableTextures", shots=2)
    cache = dtd_cache(tmp_path)
    stale = json.loads(cache.read_text())
    stale["train"] = stale["train"][::-1]
    cache.write_text(json.dumps(stale))
    os.remove(tmp_path / "dtd" / "split_zhou_DescribableTextures.json")
    capsys.readouterr()
    again = load(tmp_path, "DescribableTextures", shots=2)  # the same seed makes the same split and draw
    assert f"Note: {cache} was drawn from an earlier split; the few shots are drawn again" in capsys.readouterr().out
    assert triples(again.train_x) == triples(first.train_x)
    assert json.loads(cache.read_text())["train"] == stale["train"][::-1]


def test_a_split_saved_meanwhile_by_a_run_beside_is_the_one_every_run_uses(tmp_path, monkeypatch, capsys):
    # Two runs of other seeds started together (a sweep's workers) both find no split file and each make one; the
    # second to save it must adopt the first's, or its few-shot cache would not fit the split later runs read.
    fake.dtd(tmp_path)
    split_file = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    load(tmp_path, "DescribableTextures", seed=2)
    saved_by_the_other = split_file.read_text()
    split_file.unlink()
    make_split = datasets.dtd.DescribableTextures.make_split

    def made_while_the_other_saves(self):
        split = make_split(self)
        split_file.write_text(saved_by_the_other)
        return split

    monkeypatch.setattr(datasets.dtd.DescribableTextures, "make_split", made_while_the_other_saves)
    capsys.readouterr()
    mine = load(tmp_path, "DescribableTextures", shots=2, seed=1)
    note = f"Note: a run beside this one saved {split_file} meanwhile; this run reads that split"
    assert note in capsys.readouterr().out
    assert split_file.read_text() == saved_by_the_other
    monkeypatch.undo()
    again = load(tmp_path, "DescribableTextures", shots=2, seed=1)  # its cache fits the split on disk
    assert triples(again.train_x) == triples(mine.train_x) and triples(again.test) == triples(mine.test)
    assert not [name for name in os.listdir(split_file.parent) if name.endswith(".tmp")]


# ---------------------------------------------------------------- 3. split files whose labels leave gaps


@pytest.mark.parametrize("labels, missing", [([0, 1, 5, 6], "2, 3, 4"), ([1, 2, 3, 4], "0")])
def test_split_file_with_label_gaps_is_refused(tmp_path, labels, missing):
    fake.dtd(tmp_path)
    split = {part: [[f"{name}/{name}_{i:04d}.jpg", label, name] for label, name in zip(labels, DTD_NAMES)]
             for i, part in enumerate(("train", "val", "test"))}
    path = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    path.write_text(json.dumps(split))
    with pytest.raises(UserError) as err:
        load(tmp_path, "DescribableTextures")
    message = str(err.value)
    assert str(path) in message and f"missing: {missing}" in message and "4 class names" in message


# ---------------------------------------------------------------- 4. a file next to the class folders

FOLDER_READERS = {  # readers that list class folders, and the folder they list
    "Caltech101": "caltech-101/101_ObjectCategories",
    "DescribableTextures": "dtd/images",
    "Food101": "food-101/images",
    "EuroSAT": "eurosat/2750",
    "ImageFolder": "",
}


@pytest.mark.parametrize("name", FOLDER_READERS)
def test_a_file_next_to_the_class_folders_is_not_a_class(tmp_path, name):
    classnames = fake.SPLIT_BUILDERS[name](tmp_path)
    (tmp_path / FOLDER_READERS[name] / "index.html").write_text("<html></html>")
    assert load(tmp_path, name).classnames == classnames


# ---------------------------------------------------------------- 5. files that are not images in a class folder

STRAY = ["notes.txt", "Thumbs.db", "desktop.ini", "no_extension"]
EXTRA_IMAGES = ["UPPER.JPG", "scan.TIFF", "photo.webp", "icon.Png"]
CLASS_FOLDERS = {  # reader -> a class folder whose files it lists
    "DescribableTextures": "dtd/images/banded",
    "ImageFolder": "apple",
    "ImageNet": "imagenet/images/train/n01440764",
}


@pytest.mark.parametrize("name", CLASS_FOLDERS)
def test_only_image_files_go_into_a_split_made_from_folders(tmp_path, name, capsys):
    getattr(fake, {"DescribableTextures": "dtd", "ImageFolder": "image_folder", "ImageNet": "imagenet"}[name])(tmp_path)
    folder = tmp_path / CLASS_FOLDERS[name]
    for stray in STRAY + [".DS_Store"]:
        (folder / stray).write_text("not an image\n")
    for image in EXTRA_IMAGES:
        fake.write_image(folder / image)
    data = load(tmp_path, name)
    out = capsys.readouterr().out
    paths = {item.impath for item in data.train_x + data.val + data.test}
    assert not paths & {str(folder / stray) for stray in STRAY}
    assert {str(folder / image) for image in EXTRA_IMAGES} <= paths  # image extensions in any case
    note = next(line for line in out.splitlines() if "without an image extension" in line)
    assert "skipped 4 file(s)" in note and any(str(folder / stray) in note for stray in STRAY)


# ---------------------------------------------------------------- 6. fewer images than NUM_SHOTS


def test_classes_with_fewer_images_than_num_shots_are_named(tmp_path, capsys):
    fake.dtd(tmp_path)
    data = load(tmp_path, "DescribableTextures", shots=16)
    out = capsys.readouterr().out
    assert set(DatasetBase.split_dataset_by_label(data.train_x)) == set(range(5))
    assert all(len(items) == 3 for items in DatasetBase.split_dataset_by_label(data.train_x).values())
    assert "Creating a 16-shot dataset" in out
    assert "Note: 5 of 5 classes have fewer than 16 images, so all their images are used: 'banded' (3)," in out


def test_the_short_class_note_lists_a_few_and_keeps_the_draw(capsys):
    sizes = {0: 6, 1: 2, 2: 6, 3: 1, 4: 3, 5: 2, 6: 3, 7: 1, 8: 2, 9: 5}  # 8 classes with fewer than 5 images
    items = [Datum(f"/d/{label}/{i}.jpg", label, classname=f"c{label}") for label, n in sizes.items()
             for i in range(n)]
    random.seed(3)
    got = DatasetBase().generate_fewshot_dataset(items, num_shots=5)
    state = random.getstate()
    random.seed(3)
    groups = DatasetBase.split_dataset_by_label(items)
    expected = [x for g in groups.values() for x in (random.sample(g, 5) if len(g) >= 5 else g)]
    assert got == expected and random.getstate() == state
    out = capsys.readouterr().out
    assert "Note: 7 of 10 classes have fewer than 5 images" in out
    assert "'c1' (2), 'c3' (1), 'c4' (3), 'c5' (2), 'c6' (3) and 2 more" in out


# ---------------------------------------------------------------- 7. a read-only DATASET.ROOT


@pytest.fixture
def read_only(monkeypatch):
    """Make folders read-only for the code under test: ``read_only(folder)``.

    chmod is applied and checked with a probe file. Where it does not stop writes (root ignores permission bits),
    the two calls through which the dataset code creates files and folders, ``os.makedirs`` and the ``open`` of
    dassl/utils/tools.py (atomic_write, behind every split and cache file), fail under those folders with EROFS,
    the error a read-only mount gives.
    """
    folders, modes = [], {}
    real_open, real_makedirs = open, os.makedirs

    def inside(path):
        path = os.path.abspath(path)
        return any(path == f or path.startswith(f + os.sep) for f in folders)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    def guarded_open(path, mode="r", *args, **kwargs):
        if inside(path) and any(flag in mode for flag in "wax+"):
            refuse(path)
        return real_open(path, mode, *args, **kwargs)

    def guarded_makedirs(path, mode=0o777, exist_ok=False):
        if inside(path) and not os.path.isdir(path):
            refuse(path)
        return real_makedirs(path, mode, exist_ok)

    def make(folder):
        folder = os.path.abspath(folder)
        for d, _, _ in os.walk(folder):
            modes[d] = os.stat(d).st_mode
            os.chmod(d, 0o555)
        probe = os.path.join(folder, ".probe")
        try:
            with real_open(probe, "x"):
                pass
        except PermissionError:
            return  # the permission bits hold
        os.remove(probe)
        folders.append(folder)
        monkeypatch.setattr(tools, "open", guarded_open, raising=False)
        monkeypatch.setattr(os, "makedirs", guarded_makedirs)

    yield make
    for d, mode in modes.items():
        os.chmod(d, mode)


def ro_load(root, name, cache_dir, shots=-1, seed=1):
    random.seed(seed)
    cfg = make_cfg(root, name, shots, seed)
    cfg.DATASET.CACHE_DIR = str(cache_dir)
    return build_dataset(cfg)


def test_few_shot_cache_of_a_read_only_root_goes_to_the_cache_folder(tmp_path, read_only, capsys):
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    fake.dtd(root)
    load(root, "DescribableTextures")  # the published split file is there
    before = files_under(root)
    read_only(root)
    first = ro_load(root, "DescribableTextures", cache_dir, shots=2)
    own = dtd_cache(root)
    moved = cache_dir / str(own).lstrip(os.sep)
    assert moved.is_file() and files_under(root) == before
    out = capsys.readouterr().out
    assert f"cannot write {own}" in out and f"saved it to {moved} instead" in out

    again = ro_load(root, "DescribableTextures", cache_dir, shots=2)
    assert f"Loading preprocessed few-shot data from {moved}" in capsys.readouterr().out
    assert triples(again.train_x) == triples(first.train_x) and triples(again.val) == triples(first.val)


def test_the_dataset_folder_cache_wins_over_the_cache_folder(tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    fake.dtd(tmp_path)
    first = ro_load(tmp_path, "DescribableTextures", cache_dir, shots=2)
    own = dtd_cache(tmp_path)
    other = cache_dir / str(own).lstrip(os.sep)
    other.parent.mkdir(parents=True)
    cached = json.loads(own.read_text())
    other.write_text(json.dumps({"train": cached["train"][::-1], "val": cached["val"]}))
    capsys.readouterr()
    again = ro_load(tmp_path, "DescribableTextures", cache_dir, shots=2)
    assert f"Loading preprocessed few-shot data from {own}" in capsys.readouterr().out
    assert triples(again.train_x) == triples(first.train_x)


def test_the_default_cache_folder_is_under_the_home_folder(tmp_path, read_only, monkeypatch):
    root, home = tmp_path / "data", tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    fake.dtd(root)
    load(root, "DescribableTextures")
    read_only(root)
    ro_load(root, "DescribableTextures", "", shots=1)
    expected = home / ".cache" / "atprompt" / "fewshot" / str(dtd_cache(root, shots=1)).lstrip(os.sep)
    assert expected.is_file()


def test_a_new_split_that_cannot_be_saved_is_used_for_the_run(tmp_path, read_only, capsys):
    root = tmp_path / "data"
    classnames = fake.dtd(root)
    read_only(root)
    data = ro_load(root, "DescribableTextures", tmp_path / "cache")
    assert data.classnames == classnames and files_under(root) == files_under(root / "dtd" / "images")
    out = capsys.readouterr().out
    assert f"cannot save the new split to {root / 'dtd' / 'split_zhou_DescribableTextures.json'}" in out


def test_imagenet_listing_of_a_read_only_root_goes_to_the_cache_folder(tmp_path, read_only, monkeypatch):
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    fake.imagenet(root)
    read_only(root)
    first = ro_load(root, "ImageNet", cache_dir)
    assert (cache_dir / str(root / "imagenet" / "preprocessed.json").lstrip(os.sep)).is_file()

    def no_scan(*args, **kwargs):
        raise AssertionError("the folder listing should come from the cache folder")

    monkeypatch.setattr(datasets.imagenet.ImageNet, "read_data", no_scan)
    assert triples(ro_load(root, "ImageNet", cache_dir).train_x) == triples(first.train_x)


def test_no_writable_place_for_the_cache_names_both_and_the_key(tmp_path, read_only):
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    fake.dtd(root)
    load(root, "DescribableTextures")
    cache_dir.mkdir()
    read_only(root)
    read_only(cache_dir)
    with pytest.raises(UserError) as err:
        ro_load(root, "DescribableTextures", cache_dir, shots=2)
    message = str(err.value)
    assert str(dtd_cache(root)) in message and str(cache_dir) in message and "DATASET.CACHE_DIR" in message


# ---------------------------------------------------------------- 8. ImageFolder class folders changed


def add_class(root):
    fake.folder_tree(root, ["yak"])


def remove_class(root):
    shutil.rmtree(root / "dog")


def rename_class(root):
    os.rename(root / "cat", root / "kitten")


@pytest.mark.parametrize("change, added, removed", [
    (add_class, "'yak'", "none"),
    (remove_class, "none", "'dog'"),
    (rename_class, "'kitten'", "'cat'"),
])
def test_image_folder_split_of_other_class_folders_is_refused(tmp_path, change, added, removed):
    fake.image_folder(tmp_path)
    load(tmp_path, "ImageFolder")
    change(tmp_path)
    with pytest.raises(UserError) as err:
        load(tmp_path, "ImageFolder")
    message = str(err.value)
    assert str(tmp_path / "split_zhou_ImageFolder.json") in message and "Delete" in message
    assert f"added: {added}" in message and f"removed: {removed}" in message


def test_the_listing_of_a_dataset_follows_linked_folders_and_survives_broken_links_and_loops(tmp_path):
    data, elsewhere = tmp_path / "images", tmp_path / "elsewhere"
    (data / "cat").mkdir(parents=True)
    (data / "cat" / "1.jpg").write_bytes(b"x")
    (elsewhere / "dog").mkdir(parents=True)
    (elsewhere / "dog" / "1.jpg").write_bytes(b"y")
    (data / "dog").symlink_to(elsewhere / "dog")  # a class folder kept elsewhere, as large datasets often are
    first = listing_checksum(str(data))
    (elsewhere / "dog" / "2.jpg").write_bytes(b"z")  # the linked class changed: so does the listing
    assert listing_checksum(str(data)) != first
    (data / "cat" / "gone.jpg").symlink_to(tmp_path / "nothing.jpg")
    (data / "cat" / "loop").symlink_to(data)
    assert len(listing_checksum(str(data))) == 64
