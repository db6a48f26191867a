"""ImageNet-R: 30,000 renditions (art, cartoons, ...) of 200 ImageNet classes (labels 0..199 in wnid order)."""

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    image_dirs = ["imagenet-r"]
    layout = "imagenet-rendition/{imagenet-r/<wnid>/*.jpg (200 folders), classnames.txt (all 1000 classes)}"
