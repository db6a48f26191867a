"""ImageNet-1k: the full train set (few-shot drawn from it) and the official val set as test and val.

Also home of what the ImageNet test variants share: ``classnames.txt`` (wnid -> CLIP class name) and the
``<wnid>/`` folder listing.
"""

from __future__ import annotations

import os

from yacs.config import CfgNode

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, check_image_files, subsample_classes
from dassl.data.datasets.fewshot_cache import cache_file
from dassl.data.identity import dataset_root, file_checksum, listing_checksum, listing_name, relative
from dassl.utils.errors import UserError

from .splits import (
    cache_places,
    class_folders,
    fewshot_identity,
    folder_images,
    load_fewshot,
    read_cache,
    read_lines,
    require_dir,
    subsample_mode,
    write_cache,
)


def read_classnames(text_file: str) -> dict[str, str]:
    """``classnames.txt`` lines are "<wnid> <class name, may contain spaces>"; file order is kept."""
    classnames = {}
    for line in read_lines(text_file):
        wnid, _, classname = line.partition(" ")
        classnames[wnid] = classname
    return classnames


def names_of(wnids: list[str], classnames: dict[str, str], image_dir: str) -> list[str]:
    """Class names of ``wnids``; folders missing from classnames.txt are reported together."""
    unknown = [w for w in wnids if w not in classnames]
    if unknown:
        raise UserError(f"{len(unknown)} class folder(s) of {image_dir} are not in classnames.txt "
                        f"(first: {unknown[:3]}); use the 1000-class classnames.txt of ImageNet.")
    return [classnames[w] for w in wnids]


def read_class_folders(image_dir: str, folders: list[str], names: list[str]) -> list[Datum]:
    """Items of ``image_dir/<folders[i]>/*`` with label i and class name ``names[i]``."""
    items = []
    # Unsorted listing, as the original: the few-shot draw depends on this order.
    for label, (paths, classname) in enumerate(zip(folder_images(image_dir, folders), names)):
        items.extend(Datum(impath=path, label=label, classname=classname) for path in paths)
    return items


@DATASET_REGISTRY.register()
class ImageNet(DatasetBase):
    dataset_dir = "imagenet"
    layout = "imagenet/{images/{train,val}/<wnid>/*.JPEG, classnames.txt}"

    read_classnames = staticmethod(read_classnames)

    def __init__(self, cfg) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(root, self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        require_dir(self.image_dir, "ImageNet", self.layout)

        train, test = self.read_full_data(cfg)
        train, _ = load_fewshot(self, cfg, train)
        train, test = subsample_classes(train, test, subsample=subsample_mode(cfg))
        check_image_files(train + test, self.dataset_dir)
        # The official val images are the test set and also serve as the validation set.
        super().__init__(train_x=train, val=test, test=test)

    @classmethod
    def data_identity(cls, cfg: CfgNode) -> dict:
        """What decides its images (dassl/data/identity.py): the listing it reads (preprocessed.json, in the dataset
        or the cache folder), else the image folders it would scan, and the few-shot file of NUM_SHOTS and SEED."""
        root = dataset_root(cfg)
        dataset_dir = os.path.join(root, cls.dataset_dir)
        listing = os.path.join(dataset_dir, "preprocessed.json")
        found = next(filter(None, map(cache_file, cache_places(cfg, listing))), None)
        if found is not None:
            split = {relative(os.path.splitext(listing)[0], root) + os.path.splitext(found)[1]: file_checksum(found)}
        else:
            image_dir = os.path.join(dataset_dir, "images")
            split = {listing_name(image_dir, root): listing_checksum(image_dir)}
        return {"split": split, "shots": fewshot_identity(cfg, dataset_dir)}

    def read_full_data(self, cfg) -> tuple[list[Datum], list[Datum]]:
        """Scan images/train and images/val once; the listing is cached as preprocessed.json.

        An original ``preprocessed.pkl`` is read through the cache reader's restricted unpickler when no JSON
        listing exists yet; its order of images per class is kept, so the few-shot draw matches the original.
        A read-only dataset folder keeps the listing in the cache folder, as for the few-shot cache.
        """
        places = cache_places(cfg, os.path.join(self.dataset_dir, "preprocessed.json"))
        root = os.path.dirname(self.dataset_dir)  # listing paths start with imagenet/
        cache, data = read_cache(places, root)
        if data is not None and not all(data.get(k) and os.path.isfile(data[k][0].impath) for k in ("train", "test")):
            # A listing made on another machine (absolute paths) or before the data moved: scan again.
            print(f"The cached listing {cache} does not match the images on disk; scanning the folders again")
            data = None
        if data is None:
            classnames = read_classnames(os.path.join(self.dataset_dir, "classnames.txt"))
            data = {"train": self.read_data(classnames, "train"), "test": self.read_data(classnames, "val")}
            write_cache(places, data, root)
        return data["train"], data["test"]

    def read_data(self, classnames: dict[str, str], split_dir: str) -> list[Datum]:
        split_dir = os.path.join(self.image_dir, split_dir)
        require_dir(split_dir, "ImageNet", self.layout)
        folders = class_folders(split_dir)
        return read_class_folders(split_dir, folders, names_of(folders, classnames, split_dir))


class ImageNetVariant(DatasetBase):
    """A test-only ImageNet variant: train_x = test = all images, no val; NUM_SHOTS and SUBSAMPLE are ignored.

    ``wnids`` lists the wnid of every label and ``imagenet_indices`` its row in the 1000-class
    ``classnames.txt``, so heads trained on ImageNet can be restricted to the classes a variant covers.
    """

    dataset_dir = ""
    image_dirs: list[str] = []  # candidate image folders inside dataset_dir; the first that exists is used
    layout = ""

    def __init__(self, cfg) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(root, self.dataset_dir)
        name = type(self).__name__
        require_dir(self.dataset_dir, name, self.layout)
        candidates = [os.path.normpath(os.path.join(self.dataset_dir, d)) for d in self.image_dirs]
        self.image_dir = next((d for d in candidates if os.path.isdir(d)), candidates[0])
        require_dir(self.image_dir, name, self.layout)

        classnames = read_classnames(os.path.join(self.dataset_dir, "classnames.txt"))
        folders, self.wnids = self.label_folders(list(classnames))
        names = names_of(self.wnids, classnames, self.image_dir)
        row = {wnid: i for i, wnid in enumerate(classnames)}
        self.imagenet_indices = [row[w] for w in self.wnids]
        data = read_class_folders(self.image_dir, folders, names)
        check_image_files(data, self.dataset_dir)
        super().__init__(train_x=data, test=data)

    @classmethod
    def data_identity(cls, cfg: CfgNode) -> dict:
        """What decides its images (dassl/data/identity.py): classnames.txt and the listing of its image folder; it
        draws no few shots."""
        root = dataset_root(cfg)
        dataset_dir = os.path.join(root, cls.dataset_dir)
        candidates = [os.path.normpath(os.path.join(dataset_dir, d)) for d in cls.image_dirs]
        image_dir = next((d for d in candidates if os.path.isdir(d)), candidates[0])
        classnames = os.path.join(dataset_dir, "classnames.txt")
        return {"split": {relative(classnames, root): file_checksum(classnames),
                          listing_name(image_dir, root): listing_checksum(image_dir)}, "shots": {}}

    def label_folders(self, all_wnids: list[str]) -> tuple[list[str], list[str]]:
        """The image folder and the wnid of every label: by default wnid-named folders in sorted order."""
        folders = class_folders(self.image_dir)
        return folders, folders
