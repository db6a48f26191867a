"""UCF101: 101 actions, one middle frame per video; the first official train list is split 80/20."""

import os
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .splits import SplitDataset, read_lines, split_trainval


@DATASET_REGISTRY.register()
class UCF101(SplitDataset):
    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    layout = ("ucf101/{UCF-101-midframes/<Action_Name>/*.jpg, "
              "ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt, split_zhou_UCF101.json}")

    def make_split(self):
        cname2lab = {}
        for line in read_lines(os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")):
            label, action = line.split(" ")
            cname2lab[action] = int(label) - 1
        trainval = self.read_data(cname2lab, "trainlist01.txt")
        test = self.read_data(cname2lab, "testlist01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], text_file: str) -> list[Datum]:
        """Lines are "<Action>/<video>.avi[ <id>]"; frames live in the underscore-separated action folder."""
        items = []
        for line in read_lines(os.path.join(self.dataset_dir, "ucfTrainTestlist", text_file)):
            action, filename = line.split(" ")[0].split("/")
            classname = "_".join(re.findall("[A-Z][^A-Z]*", action))  # ApplyEyeMakeup -> Apply_Eye_Makeup
            impath = os.path.join(self.image_dir, classname, filename.replace(".avi", ".jpg"))
            items.append(Datum(impath=impath, label=cname2lab[action], classname=classname))
        return items
