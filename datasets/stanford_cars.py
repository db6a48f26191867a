"""Stanford Cars: 196 car models; the official train set is split 80/20 into train and val.

Split paths are relative to ``stanford_cars/`` itself (``cars_train/00001.jpg``), as in the original split file.
"""

import os

from scipy.io import loadmat

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .splits import SplitDataset, split_trainval


@DATASET_REGISTRY.register()
class StanfordCars(SplitDataset):
    dataset_dir = "stanford_cars"
    split_file = "split_zhou_StanfordCars.json"
    layout = ("stanford_cars/{cars_train/, cars_test/, devkit/{cars_train_annos,cars_meta}.mat, "
              "cars_test_annos_withlabels.mat, split_zhou_StanfordCars.json}")

    def make_split(self):
        meta_file = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval = self.read_data("cars_train", os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat"),
                                  meta_file)
        test = self.read_data("cars_test", os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), meta_file)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, image_dir: str, anno_file: str, meta_file: str) -> list[Datum]:
        annotations = loadmat(anno_file)["annotations"][0]
        names = loadmat(meta_file)["class_names"][0]
        items = []
        for anno in annotations:
            label = int(anno["class"][0, 0]) - 1
            # "Audi TTS Coupe 2012" -> "2012 Audi TTS Coupe"
            *model, year = str(names[label][0]).split(" ")
            impath = os.path.join(self.dataset_dir, image_dir, str(anno["fname"][0]))
            items.append(Datum(impath=impath, label=label, classname=" ".join([year, *model])))
        return items
