"""Oxford-IIIT Pets: 37 cat and dog breeds; the official trainval list is split 80/20 into train and val."""

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum, subsample_classes

from .splits import SplitDataset, read_lines, read_split, save_split, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(SplitDataset):
    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_file = "split_zhou_OxfordPets.json"
    layout = "oxford_pets/{images/*.jpg, annotations/{trainval,test}.txt, split_zhou_OxfordPets.json}"

    # Other codebases reach the shared split helpers through this class.
    read_split = staticmethod(read_split)
    save_split = staticmethod(save_split)
    split_trainval = staticmethod(split_trainval)
    subsample_classes = staticmethod(subsample_classes)

    def make_split(self):
        trainval = self.read_data("trainval.txt")
        test = self.read_data("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, split_file: str) -> list[Datum]:
        """Lines are "<image> <class id> <species> <breed id>"; the breed is the image name minus its number."""
        items = []
        for line in read_lines(os.path.join(self.dataset_dir, "annotations", split_file)):
            imname, label = line.split(" ")[:2]
            breed = imname.rsplit("_", 1)[0].lower()
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(Datum(impath=impath, label=int(label) - 1, classname=breed))
        return items
