"""Custom data: DATASET.ROOT is a folder of class folders (``<ROOT>/<class>/*.jpg``).

Labels follow the sorted class-folder names, which are also the class names (underscores become spaces in
the prompts). The first run splits every class 50/20/30 into train / val / test and saves the split as
``<ROOT>/split_zhou_ImageFolder.json``. The split is drawn with its own fixed seed, so every run and every
``--seed`` shares it and the global RNG (which draws the few shots) is left untouched; edit or replace the file
to use a split of your own (it must cover every class folder). Few-shot sampling and base/new subsampling then
work as for the benchmarks.
"""

import os
import random

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import first_few
from dassl.utils.errors import UserError

from .splits import SplitDataset, class_folders, read_and_split_data

SPLIT_SEED = 0
IGNORED = ["split_fewshot"]  # the few-shot cache folder sits beside the class folders


def _listed(names: list[str]) -> str:
    return first_few([repr(name) for name in names]) or "none"


@DATASET_REGISTRY.register()
class ImageFolder(SplitDataset):
    split_file = "split_zhou_ImageFolder.json"
    split_of_own_folders = True
    layout = "<DATASET.ROOT>/{<class_a>/*.jpg, <class_b>/*.jpg, ...} (one folder per class, at least 4 images each)"

    @property
    def label(self) -> str:
        """Its name in output folders, run records and result tables: the folder's own (two image folders never
        share a row)."""
        return os.path.basename(self.dataset_dir)

    def make_split(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, rng=random.Random(SPLIT_SEED))

    def check_split(self, split, split_path):
        """Refuse a split file whose class folders are not the ones there are now.

        A class folder added, removed or renamed since the file was written would otherwise leave the run silently
        on the old classes, or fail later on missing images.
        """
        in_split = {os.path.relpath(item.impath, self.image_dir).split(os.sep)[0] for part in split for item in part}
        on_disk = set(class_folders(self.image_dir, IGNORED))
        added, removed = sorted(on_disk - in_split), sorted(in_split - on_disk)
        if added or removed:
            raise UserError(f"ImageFolder: the class folders of {self.image_dir} changed since {split_path} was "
                            f"written (added: {_listed(added)}; removed: {_listed(removed)}). Delete {split_path} to "
                            f"make a new split of the current folders, or restore the folders.")
