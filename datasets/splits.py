"""What the benchmark readers share: split files, split generation, the few-shot cache and the common flow.

A reader only states its dataset's specifics (folder names, split file name, how to make the split when the file
is missing); ``SplitDataset`` runs the protocol every CoOp-style benchmark follows:

1. read ``split_zhou_<Name>.json`` or make the split from the raw data and save it;
2. with ``NUM_SHOTS >= 1`` load or draw the few-shot subsets, cached in ``split_fewshot/shot_{K}-seed_{SEED}.json``
   (in ``DATASET.CACHE_DIR`` when the dataset folder is read-only);
3. keep the base or new half of the classes (``DATASET.SUBSAMPLE_CLASSES``).

The random calls (``random.shuffle`` while splitting, then ``random.sample`` per class for the shots) happen in
exactly the original order, so the same seed gives the same images as the published runs.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import random
from collections import defaultdict

from yacs.config import CfgNode

from dassl.data.datasets import DatasetBase, Datum, check_image_files, datums_from_entries, subsample_classes
from dassl.data.datasets.fewshot_cache import cache_file, load_fewshot_cache, save_fewshot_cache
from dassl.data.identity import dataset_root, file_checksum, listing_checksum, listing_name, relative
from dassl.utils import first_few, listdir_nohidden, read_json, write_json
from dassl.utils.errors import UserError

LAYOUT_DOC = "docs/DATASETS.md"
# What a class folder may hold: a notes.txt, Thumbs.db or desktop.ini would fail only when it is read as an image.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Where caches go when the dataset folder cannot be written ("" in DATASET.CACHE_DIR).
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "atprompt", "fewshot")
# A folder this process may not write: a read-only mount, or no permission (shared datasets often are).
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})

Split = tuple[list[Datum], list[Datum], list[Datum]]


def require_dir(path: str, name: str, layout: str) -> None:
    """Fail with the expected folder layout when a dataset folder is missing."""
    if not os.path.isdir(path):
        raise UserError(
            f"{name}: folder not found: {path}\n"
            f"  expected under DATASET.ROOT: {layout}\n"
            f"  Set DATASET.ROOT (--root) to the folder that holds it; {LAYOUT_DOC} says where to get the data."
        )


def read_lines(path: str) -> list[str]:
    """The non-empty lines of an annotation text file, stripped."""
    if not os.path.isfile(path):
        raise UserError(f"Annotation file not found: {path}\n  It comes with the dataset download; "
                        f"{LAYOUT_DOC} shows the expected layout.")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def read_split(filepath: str, path_prefix: str) -> Split:
    """Read a ``split_zhou_*.json`` file; its relative image paths are joined onto ``path_prefix``."""
    print(f"Reading split from {filepath}")
    try:
        split = read_json(filepath)
    except UserError as err:
        raise UserError(f"Split file {filepath} is not valid JSON. Download it again (see {LAYOUT_DOC}) or delete "
                        f"it to make a new split (which differs from the published one).") from err
    if not isinstance(split, dict) or any(not isinstance(split.get(key), list) for key in ("train", "val", "test")):
        found = sorted(split) if isinstance(split, dict) else type(split).__name__
        raise UserError(f"Split file {filepath} must hold an object with the lists 'train', 'val' and 'test'; "
                        f"found {found}.")

    try:
        train, val, test = (datums_from_entries(split[key], path_prefix, key) for key in ("train", "val", "test"))
    except ValueError as err:
        raise UserError(f"Split file {filepath}: {err}.") from err
    check_labels(train + val + test, filepath)
    return train, val, test


def check_labels(items: list[Datum], filepath: str) -> None:
    """Refuse labels that do not run 0..n-1: a gap would make max(label) + 1 classes for fewer class names."""
    labels = sorted({item.label for item in items})
    if labels == list(range(len(labels))):
        return
    missing = [str(label) for label in range(max(labels) + 1) if label not in labels]
    names = len({item.classname for item in items})
    raise UserError(f"Split file {filepath}: labels must run from 0 with no gaps, one per class; found labels "
                    f"{first_few([str(label) for label in labels])} for {names} class names"
                    + (f" (missing: {first_few(missing)})" if missing else "")
                    + f". Fix the labels in the file, or download it again ({LAYOUT_DOC}).")


def save_split(train: list[Datum], val: list[Datum], test: list[Datum], filepath: str, path_prefix: str,
               keep_existing: bool = False) -> bool:
    """Write a split file in the original format: ``[relative_path, label, classname]`` entries, 4-space indent.
    With `keep_existing`, a file written meanwhile (by a run beside this one) stays; returns whether it was written."""

    def extract(items: list[Datum]) -> list:
        return [[os.path.relpath(item.impath, path_prefix), item.label, item.classname] for item in items]

    split = {"train": extract(train), "val": extract(val), "test": extract(test)}
    # atomic, in the original's format (4-space indent, "," and ": " separators)
    written = write_json(split, filepath, keep_existing)
    if written:
        print(f"Saved split to {filepath}")
    return written


def split_trainval(trainval: list[Datum], p_val: float = 0.2) -> tuple[list[Datum], list[Datum]]:
    """Hold out ``round(p_val * n)`` random images of every class for validation.

    Classes are visited in first-appearance order with one ``random.shuffle`` each, as in the original.
    """
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    indices = defaultdict(list)
    for idx, item in enumerate(trainval):
        indices[item.label].append(idx)

    train, val = [], []
    for label, idxs in indices.items():
        n_val = round(len(idxs) * p_val)
        if n_val == 0:
            raise UserError(f"Class {label} ({trainval[idxs[0]].classname!r}) has only {len(idxs)} trainval "
                            f"image(s), too few to hold out {p_val:.0%} for validation (at least 3 are needed).")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_groups(groups: list[tuple[int, str, list[str]]], p_trn: float = 0.5, p_val: float = 0.2,
                 rng: random.Random | None = None) -> Split:
    """Split each class ``(label, classname, image_paths)`` at random into train / val / test.

    Groups are shuffled in the given order; train takes ``round(p_trn * n)``, val ``round(p_val * n)``, test the
    rest. ``rng`` defaults to the global ``random`` (the benchmarks' behaviour).
    """
    shuffle = (rng or random).shuffle
    train, val, test = [], [], []
    for label, classname, impaths in groups:
        shuffle(impaths)
        n_train = round(len(impaths) * p_trn)
        n_val = round(len(impaths) * p_val)
        if n_train == 0 or n_val == 0 or n_train + n_val >= len(impaths):
            raise UserError(f"Class {classname!r} has only {len(impaths)} image(s); at least 4 are needed to give "
                            f"train, val and test one image each.")
        parts = (impaths[:n_train], impaths[n_train:n_train + n_val], impaths[n_train + n_val:])
        for out, paths in zip((train, val, test), parts):
            out.extend(Datum(impath=path, label=label, classname=classname) for path in paths)
    return train, val, test


def class_folders(path: str, ignored=()) -> list[str]:
    """Sorted names of the visible sub-folders of ``path`` but ``ignored``: the files beside them are no classes."""
    return sorted(e.name for e in os.scandir(path)
                  if e.is_dir() and not e.name.startswith(".") and e.name not in ignored)


def is_image(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def folder_images(image_dir: str, folders: list[str]) -> list[list[str]]:
    """The image paths in each of ``image_dir``'s ``folders``, in listing order; other files are left out.

    The listing is unsorted, as in the original, so that a split or few-shot draw made here matches one made by
    the original code on the same file system. One note tells how many files were skipped.
    """
    images, skipped = [], []
    for folder in folders:
        folder_dir = os.path.join(image_dir, folder)
        paths = [os.path.join(folder_dir, name) for name in listdir_nohidden(folder_dir)]
        images.append([p for p in paths if is_image(p)])
        skipped.extend(p for p in paths if not is_image(p))
    if skipped:
        print(f"Note: skipped {len(skipped)} file(s) without an image extension in the class folders of {image_dir} "
              f"(e.g. {skipped[0]}); images end in {', '.join(sorted(IMAGE_EXTENSIONS))}, in any case.")
    return images


def read_and_split_data(image_dir: str, p_trn: float = 0.5, p_val: float = 0.2, ignored=(),
                        new_cnames: dict[str, str] | None = None, rng: random.Random | None = None) -> Split:
    """Split a ``<class>/<image>`` folder tree: labels follow the sorted folder names (``ignored`` left out).

    ``new_cnames`` renames folders to the class names that go into prompts.
    """
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    categories = class_folders(image_dir, ignored)
    groups = [(label, (new_cnames or {}).get(category, category), impaths)
              for label, (category, impaths) in enumerate(zip(categories, folder_images(image_dir, categories)))]
    return split_groups(groups, p_trn, p_val, rng)


def cache_places(cfg, path: str) -> tuple[str, str]:
    """Where the cache file ``path`` of a dataset folder is looked for: there, then in the cache folder.

    The cache folder (``DATASET.CACHE_DIR``) mirrors the file's absolute path, so that two dataset copies with the
    same folder name never share a cache.
    """
    base = os.path.abspath(os.path.expanduser(cfg.DATASET.CACHE_DIR or DEFAULT_CACHE_DIR))
    return path, os.path.join(base, os.path.abspath(path).lstrip(os.sep))


def read_cache(places: tuple[str, str], root: str) -> tuple[str | None, dict[str, list[Datum]] | None]:
    """The first cache file found in ``places`` (a JSON file or the original's ``.pkl``) and its content."""
    for place in places:
        found = cache_file(place)
        if found is not None:
            return found, load_fewshot_cache(place, root)
    return None, None


def write_cache(places: tuple[str, str], data: dict[str, list[Datum]], root: str) -> None:
    """Save a cache in the dataset folder or, where that folder is read-only, in the cache folder."""
    own, fallback = places
    try:
        save_fewshot_cache(own, data, root)
        return
    except OSError as err:
        if err.errno not in NOT_WRITABLE:
            raise
        reason = err.strerror
    try:
        save_fewshot_cache(fallback, data, root)
    except OSError as err:
        raise UserError(f"Cannot write the cache {own} ({reason}), nor {fallback} ({err.strerror}): set "
                        f"DATASET.CACHE_DIR to a writable folder.") from err
    print(f"Note: cannot write {own} ({reason}); saved it to {fallback} instead, where later runs find it "
          f"(DATASET.CACHE_DIR sets the folder).")


def _misfit(item: Datum, names: dict[int, str], members: set[Datum] | None, dataset_dir: str) -> str | None:
    """What is wrong with one cached few-shot item, given the split's class names and the images it draws from."""
    if item.label not in names:
        return f"has label {item.label}, but the split has {len(names)} classes (labels 0..{len(names) - 1})"
    if names[item.label] != item.classname:
        return f"has label {item.label} named {item.classname!r}, which the split names {names[item.label]!r}"
    # A pickle of the original code may name the same images through another root; only their existence is checked.
    inside = item.impath.startswith(dataset_dir + os.sep)
    if members is not None and inside and item not in members:
        return f"({item.impath}) is not among the images the split offers for it"
    return None


def check_cache_fits(data: dict[str, list[Datum]], train: list[Datum], val: list[Datum] | None, path: str,
                     dataset_dir: str) -> None:
    """Refuse a few-shot cache that was edited or drawn from another split.

    Loading it would train with labels the model has no class for (and fail only then), or on images that are not
    this split's few shots. Every cached item must carry a label and class name of the split and, when it lies in
    ``dataset_dir``, be one of the split's images.
    """
    if "train" not in data or (val is not None and "val" not in data):
        raise UserError(f"Few-shot cache {path} lacks the 'train' or 'val' subset; delete it to draw again.")
    names = DatasetBase.get_lab2cname(train)[0]
    members = {"train": set(train), "val": set(val or ())}
    for part, items in data.items():
        for i, item in enumerate(items):
            problem = _misfit(item, names, members.get(part), dataset_dir)
            if problem:
                raise UserError(f"Few-shot cache {path}: entry {i} of '{part}' {problem}; the cache was edited or "
                                f"drawn from another split. Delete it to draw the few shots again.")


def load_fewshot(reader: DatasetBase, cfg, train: list[Datum], val: list[Datum] | None = None,
                 new_split: bool = False):
    """Load or draw the few-shot train (and val) subsets of ``reader`` and cache them.

    Drawing calls ``generate_fewshot_dataset(train, K)`` then ``generate_fewshot_dataset(val, min(K, 4))``. The
    cache lives in ``<dataset_dir>/split_fewshot/shot_{K}-seed_{SEED}.json`` (see ``cache_places``); a ``.pkl``
    left there by the original code is read too, and a cached split wins over the draw, except after
    ``new_split``: a split just made replaces the one the caches were drawn from. The draw is made in any case: it
    leaves Python's random state as a first run leaves it, so what is drawn later (the attribute search's
    candidate order) never depends on whether the cache existed. Returns ``(train, val)`` unchanged when
    ``NUM_SHOTS < 1``.
    """
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots < 1:
        return train, val

    places = cache_places(cfg, os.path.join(reader.dataset_dir, "split_fewshot",
                                            f"shot_{num_shots}-seed_{cfg.SEED}.json"))
    if new_split:
        path, data = None, None
        stale = next(filter(None, map(cache_file, places)), None)
        if stale:
            print(f"Note: {stale} was drawn from an earlier split; the few shots are drawn again for the new one.")
    else:
        path, data = read_cache(places, reader.dataset_dir)
    with contextlib.redirect_stdout(io.StringIO()) if data is not None else contextlib.nullcontext():
        drawn = {"train": reader.generate_fewshot_dataset(train, num_shots=num_shots)}
        if val is not None:
            drawn["val"] = reader.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
    if data is None:
        write_cache(places, drawn, reader.dataset_dir)
        data = drawn
    else:
        check_cache_fits(data, train, val, path, reader.dataset_dir)
    return data["train"], (data["val"] if val is not None else None)


def fewshot_identity(cfg: CfgNode, dataset_dir: str) -> dict[str, str]:
    """The "shots" part of a run's data identity (dassl/data/identity.py): the few-shot cache of NUM_SHOTS and
    SEED that the run reads or writes, in the dataset folder or the cache folder, named by its place in the dataset
    folder; nothing when no cache is there (yet) or NUM_SHOTS < 1."""
    if cfg.DATASET.NUM_SHOTS < 1:
        return {}
    own = os.path.join(dataset_dir, "split_fewshot", f"shot_{cfg.DATASET.NUM_SHOTS}-seed_{cfg.SEED}.json")
    found = next(filter(None, map(cache_file, cache_places(cfg, own))), None)
    if found is None:
        return {}
    name = os.path.splitext(relative(own, dataset_root(cfg)))[0] + os.path.splitext(found)[1]
    return {name: file_checksum(found)}


def subsample_mode(cfg) -> str:
    """``DATASET.SUBSAMPLE_CLASSES``, "all" when the config does not define it."""
    return cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")


class SplitDataset(DatasetBase):
    """A benchmark with a fixed train/val/test split; subclasses set the class attributes and ``make_split``."""

    dataset_dir = ""  # folder under DATASET.ROOT ("" = DATASET.ROOT itself)
    image_dir = ""  # image folder inside dataset_dir; split paths are relative to it ("" = dataset_dir)
    split_file: str | None = None  # split_zhou_<Name>.json; None: make_split reads an official split every time
    # Whether the split file is made here from the image folders rather than published: other images under the same
    # names would leave it unchanged, so the folders' listing is part of the data identity too.
    split_of_own_folders = False
    layout = ""  # one-line folder tree quoted when the data is missing

    def __init__(self, cfg) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.normpath(os.path.join(root, self.dataset_dir))
        self.image_dir = os.path.normpath(os.path.join(self.dataset_dir, self.image_dir))
        require_dir(self.image_dir, type(self).__name__, self.layout)

        new_split = self.split_path is not None and not os.path.exists(self.split_path)
        train, val, test = self.read_or_make_split()
        train, val = load_fewshot(self, cfg, train, val, new_split=new_split)
        train, val, test = subsample_classes(train, val, test, subsample=subsample_mode(cfg))
        check_image_files(train + val + test, self.dataset_dir)
        super().__init__(train_x=train, val=val, test=test)

    @property
    def split_path(self) -> str | None:
        return os.path.join(self.dataset_dir, self.split_file) if self.split_file else None

    def read_or_make_split(self) -> Split:
        if self.split_file is None:
            return self.make_split()
        split_path = self.split_path
        if os.path.exists(split_path):
            split = read_split(split_path, self.image_dir)
            self.check_split(split, split_path)
            return split
        if self.split_of_own_folders:
            print(f"Note: {split_path} not found: splitting the class folders into train / val / test with a fixed "
                  "seed; every later run and seed reads this split (edit or replace the file to use your own)")
        else:
            print(f"Note: {split_path} not found; making a new split from the raw data. It differs from the published "
                  f"split, so results are not comparable with the paper's: download the split file ({LAYOUT_DOC}).")
        train, val, test = self.make_split()
        try:
            # Runs started together (a sweep's workers) may each make a split, from different seeds: the first one
            # saved is the split of all of them, or their few-shot caches would be drawn from different splits.
            if not save_split(train, val, test, split_path, self.image_dir, keep_existing=True):
                print(f"Note: a run beside this one saved {split_path} meanwhile; this run reads that split")
                return read_split(split_path, self.image_dir)
        except OSError as err:
            if err.errno not in NOT_WRITABLE:
                raise
            fix = ("make the folder writable" if self.split_of_own_folders else
                   f"put the split file there ({LAYOUT_DOC})")
            print(f"Note: cannot save the new split to {split_path} ({err.strerror}); it serves this run only, and "
                  f"the next run makes it again. To have a fixed split, {fix}.")
        return train, val, test

    def make_split(self) -> Split:
        """Build train / val / test from the raw data (used when the split file is missing)."""
        raise NotImplementedError

    @classmethod
    def data_identity(cls, cfg: CfgNode) -> dict:
        """What decides this reader's images (dassl/data/identity.py): its split file, or the image folder's listing
        where the split is made from the folders each run, and the few-shot file of NUM_SHOTS and SEED."""
        root = dataset_root(cfg)
        dataset_dir = os.path.normpath(os.path.join(root, cls.dataset_dir))
        split_path = os.path.join(dataset_dir, cls.split_file) if cls.split_file else None
        split = {}
        if split_path and os.path.isfile(split_path):
            split[relative(split_path, root)] = file_checksum(split_path)
        if not split or cls.split_of_own_folders:
            image_dir = os.path.normpath(os.path.join(dataset_dir, cls.image_dir))
            skip = ("split_fewshot", cls.split_file or "")  # the caches and split file written there
            split[listing_name(image_dir, root)] = listing_checksum(image_dir, skip)
        return {"split": split, "shots": fewshot_identity(cfg, dataset_dir)}

    def check_split(self, split: Split, split_path: str) -> None:
        """Refuse a split file that no longer fits the raw data; readers that can tell override this."""
