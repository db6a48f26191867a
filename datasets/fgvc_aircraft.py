"""FGVC-Aircraft: 100 aircraft variants with the official train / val / test lists (no split file)."""

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .splits import SplitDataset, read_lines


@DATASET_REGISTRY.register()
class FGVCAircraft(SplitDataset):
    dataset_dir = "fgvc_aircraft"
    image_dir = "images"
    layout = "fgvc_aircraft/{images/*.jpg, variants.txt, images_variant_{train,val,test}.txt}"

    def make_split(self):
        classnames = read_lines(os.path.join(self.dataset_dir, "variants.txt"))
        cname2lab = {c: i for i, c in enumerate(classnames)}
        return tuple(self.read_data(cname2lab, f"images_variant_{part}.txt") for part in ("train", "val", "test"))

    def read_data(self, cname2lab: dict[str, int], split_file: str) -> list[Datum]:
        """Lines are "<image id> <variant, may contain spaces>"."""
        items = []
        for line in read_lines(os.path.join(self.dataset_dir, split_file)):
            imname, classname = line.split(" ", 1)
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(Datum(impath=impath, label=cname2lab[classname], classname=classname))
        return items
