"""Custom data: DATASET.ROOT is a folder of class folders (``<ROOT>/<class>/*.jpg``).

Labels follow the sorted class-folder names, which are also the class names (underscores become spaces in
the prompts). The first run splits every class 50/20/30 into train / val / test and saves the split as
``<ROOT>/split_zhou_ImageFolder.json``. The split is drawn with its own fixed seed, so every run and every
``--seed`` shares it and the global RNG (which draws the few shots) is left untouched; edit or replace the file
to use a split of your own. Few-shot sampling and base/new subsampling then work as for the benchmarks.
"""

import random

from dassl.data.datasets import DATASET_REGISTRY

from .splits import SplitDataset, read_and_split_data

SPLIT_SEED = 0
IGNORED = ["split_fewshot"]  # the few-shot cache folder sits beside the class folders


@DATASET_REGISTRY.register()
class ImageFolder(SplitDataset):
    split_file = "split_zhou_ImageFolder.json"
    layout = "<DATASET.ROOT>/{<class_a>/*.jpg, <class_b>/*.jpg, ...} (one folder per class, at least 4 images each)"

    def make_split(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, rng=random.Random(SPLIT_SEED))
