"""Food-101: 101 dish classes, split 50/20/30 per class."""

from dassl.data.datasets import DATASET_REGISTRY

from .splits import SplitDataset, read_and_split_data


@DATASET_REGISTRY.register()
class Food101(SplitDataset):
    dataset_dir = "food-101"
    image_dir = "images"
    split_file = "split_zhou_Food101.json"
    layout = "food-101/{images/<dish>/*.jpg, split_zhou_Food101.json}"

    def make_split(self):
        return read_and_split_data(self.image_dir)
