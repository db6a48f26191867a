"""SUN397: 397 scene categories; the first official partition's training list is split 80/20 into train and val."""

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .splits import SplitDataset, read_lines, split_trainval


@DATASET_REGISTRY.register()
class SUN397(SplitDataset):
    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    layout = "sun397/{SUN397/<letter>/<scene>[/<sub>]/*.jpg, ClassName.txt, Training_01.txt, Testing_01.txt}"

    def make_split(self):
        # ClassName.txt lines look like "/a/apartment_building/outdoor"; the line index is the label.
        classnames = [line[1:] for line in read_lines(os.path.join(self.dataset_dir, "ClassName.txt"))]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], text_file: str) -> list[Datum]:
        items = []
        for line in read_lines(os.path.join(self.dataset_dir, text_file)):
            imname = line[1:]
            category = os.path.dirname(imname)
            # "a/apartment_building/outdoor" -> "outdoor apartment_building": drop the letter, qualifier first.
            classname = " ".join(category.split("/")[1:][::-1])
            items.append(Datum(impath=os.path.join(self.image_dir, imname), label=cname2lab[category],
                               classname=classname))
        return items
