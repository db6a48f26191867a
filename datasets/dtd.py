"""DTD (Describable Textures): 47 texture classes, split 50/20/30 per class."""

from dassl.data.datasets import DATASET_REGISTRY

from .splits import SplitDataset, read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(SplitDataset):
    dataset_dir = "dtd"
    image_dir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    layout = "dtd/{images/<texture>/*.jpg, split_zhou_DescribableTextures.json}"

    # Other codebases call the folder split through this class.
    read_and_split_data = staticmethod(read_and_split_data)

    def make_split(self):
        return read_and_split_data(self.image_dir)
