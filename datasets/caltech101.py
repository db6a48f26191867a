"""Caltech101: 100 object classes (the two background/duplicate folders left out), split 50/20/30 per class."""

from dassl.data.datasets import DATASET_REGISTRY

from .splits import SplitDataset, read_and_split_data

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
# Folder names that read badly in a prompt; all others are used as they are (underscores included).
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(SplitDataset):
    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    layout = "caltech-101/{101_ObjectCategories/<class>/*.jpg, split_zhou_Caltech101.json}"

    def make_split(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
