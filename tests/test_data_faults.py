"""Faulty data inputs: each gives one clear UserError naming the input and the fix, or a note and the expected result.

The datasets are the tiny fake layouts of tests/fake_datasets.py.
"""

import random

import fake_datasets as fake
import pytest
from test_datasets import load

from dassl.data.datasets import DatasetBase, Datum

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
