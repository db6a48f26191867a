"""Oxford Flowers 102: 102 flower species, split 50/20/30 per class."""

import os
from collections import defaultdict

from scipy.io import loadmat

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import read_json

from .splits import SplitDataset, split_groups


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitDataset):
    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    layout = "oxford_flowers/{jpg/image_XXXXX.jpg, imagelabels.mat, cat_to_name.json, split_zhou_OxfordFlowers.json}"

    def make_split(self):
        # imagelabels.mat holds the 1-based class of image_00001.jpg, image_00002.jpg, ... in order.
        labels = loadmat(os.path.join(self.dataset_dir, "imagelabels.mat"))["labels"][0]
        impaths = defaultdict(list)
        for i, label in enumerate(labels):
            impaths[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        lab2cname = read_json(os.path.join(self.dataset_dir, "cat_to_name.json"))
        groups = [(label - 1, lab2cname[str(label)], paths) for label, paths in impaths.items()]
        print("Splitting data into 50% train, 20% val, and 30% test")
        return split_groups(groups)
