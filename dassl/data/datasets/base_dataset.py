"""Datum records, the dataset container and the few-shot / base-new class protocol.

The class path ``dassl.data.datasets.base_dataset.Datum`` and its private field names are kept on purpose:
few-shot caches pickled by the original code store instances of exactly this class.
"""

from __future__ import annotations

import math
import os
import random
from collections import defaultdict

from dassl.utils import first_few
from dassl.utils.errors import UserError

# Where the expected image layout of every benchmark is written down (quoted in missing-file errors).
LAYOUT_DOC = "docs/DATASETS.md"
# How split files and few-shot caches store one image (the cache adds the domain when it is not 0).
ENTRY_FORMAT = "[relative_image_path, integer_label, classname]"


class Datum:
    """One labelled image: path, class label, domain label and class name.

    The constructor checks types only. Whether the files exist is checked once per split by
    ``check_image_files``, which reports every missing file in a single error instead of failing on the first.
    """

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}: {impath!r}")
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def _key(self) -> tuple:
        return (self._impath, self._label, self._domain, self._classname)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Datum) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, "
                f"classname={self._classname!r})")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true would otherwise pass as label 1


def _datum_of(entry, root: str) -> Datum | None:
    """The Datum of one stored entry; None when the entry has another shape."""
    if not (isinstance(entry, list) and len(entry) in (3, 4)):
        return None
    impath, label, classname, *domain = entry
    if not (isinstance(impath, str) and isinstance(classname, str) and all(map(_is_int, [label, *domain]))):
        return None
    return Datum(impath=os.path.join(root, impath), label=label, domain=domain[0] if domain else 0,
                 classname=classname)


def datums_from_entries(entries, root: str, key: str) -> list[Datum]:
    """The Datums of the stored entries of split part ``key``, their paths joined onto ``root``.

    Raises ValueError naming the first entry that is not ``ENTRY_FORMAT`` (plus an optional integer domain): a
    fractional or boolean label is refused rather than truncated into another class.
    """
    if not isinstance(entries, list):
        raise ValueError(f"'{key}' is {type(entries).__name__}, not a list of entries")
    items = []
    for i, entry in enumerate(entries):
        item = _datum_of(entry, root)
        if item is None:
            raise ValueError(f"entry {i} of '{key}' is {entry!r}; expected {ENTRY_FORMAT}")
        items.append(item)
    return items


def check_image_files(items, dataset_dir: str, show: int = 5) -> None:
    """Raise one FileNotFoundError if any image of ``items`` (Datums or paths) is missing.

    The message lists the first ``show`` missing paths and the total count, so a wrong DATASET.ROOT or an
    incomplete download is diagnosed in one go.
    """
    paths = [item.impath if isinstance(item, Datum) else item for item in items]
    missing = [p for p in paths if not os.path.isfile(p)]
    if not missing:
        return
    listed = "\n".join(f"  {p}" for p in missing[:show])
    more = f"\n  ... and {len(missing) - show} more" if len(missing) > show else ""
    raise UserError(
        f"{len(missing)} of {len(paths)} image files are missing under {dataset_dir}:\n{listed}{more}\n"
        f"Check DATASET.ROOT and lay the images out as described in {LAYOUT_DOC}."
    )


class DatasetBase:
    """Container of the train_x / train_u / val / test splits (lists of Datum)."""

    dataset_dir = ""  # set by each reader
    domains: list[str] = []  # domain names, for multi-domain datasets

    def __init__(self, train_x=None, train_u=None, val=None, test=None) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source) -> int:
        """max(label) + 1 (as in Dassl); 0 for an empty or absent split."""
        return max((item.label for item in data_source or ()), default=-1) + 1

    @staticmethod
    def get_lab2cname(data_source) -> tuple[dict[int, str], list[str]]:
        """Label -> class name mapping and the class names ordered by label."""
        mapping = {item.label: item.classname for item in data_source or ()}
        labels = sorted(mapping)
        return {label: mapping[label] for label in labels}, [mapping[label] for label in labels]

    def generate_fewshot_dataset(self, *data_sources, num_shots: int = -1, repeat: bool = False):
        """Draw ``num_shots`` items per label from each source with Python's global ``random``.

        The order of random calls is part of the protocol (published shots depend on it): labels are visited in
        first-appearance order; ``random.sample`` when a label has enough items, ``random.choices`` when it has
        too few and ``repeat`` is set, otherwise all its items are kept without touching the RNG.
        One source gives one list, several give a list of lists.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources

        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            sampled, short = [], []
            groups = self.split_dataset_by_label(data_source)
            for items in groups.values():
                if len(items) >= num_shots:
                    sampled.extend(random.sample(items, num_shots))
                elif repeat:
                    sampled.extend(random.choices(items, k=num_shots))
                else:
                    sampled.extend(items)
                    short.append(f"{items[0].classname!r} ({len(items)})")
            if short:  # otherwise "Creating a K-shot dataset" would hide that these classes got fewer
                print(f"Note: {len(short)} of {len(groups)} classes have fewer than {num_shots} images, so all their "
                      f"images are used: {first_few(short)}")
            output.append(sampled)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def split_dataset_by_label(data_source) -> dict[int, list[Datum]]:
        """Group items by label; keys keep the order in which labels first appear."""
        groups = defaultdict(list)
        for item in data_source:
            groups[item.label].append(item)
        return groups

    @staticmethod
    def split_dataset_by_domain(data_source) -> dict[int, list[Datum]]:
        """Group items by domain; keys keep the order in which domains first appear."""
        groups = defaultdict(list)
        for item in data_source:
            groups[item.domain].append(item)
        return groups


SUBSAMPLE_CHOICES = ("all", "base", "new")


def subsample_classes(*args, subsample: str = "all") -> list:
    """Keep the base (first ceil(n/2)) or new (remaining) classes of every split and relabel them from 0.

    Classes are taken from the first argument (the few-shot train split), sorted by label. Items are rebuilt
    with the same path and class name (domain back to 0). ``all`` returns the splits unchanged.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise UserError(f"DATASET.SUBSAMPLE_CLASSES must be one of {list(SUBSAMPLE_CHOICES)}, got {subsample!r}")
    if subsample == "all":
        return list(args)

    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabeler = {label: new for new, label in enumerate(selected)}

    return [
        [Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname)
         for item in split if item.label in relabeler]
        for split in args
    ]
