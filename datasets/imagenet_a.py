"""ImageNet-A: 7,500 natural adversarial images of 200 ImageNet classes (labels 0..199 in wnid order)."""

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):
    dataset_dir = "imagenet-adversarial"
    image_dirs = ["imagenet-a"]
    layout = "imagenet-adversarial/{imagenet-a/<wnid>/*.jpg (200 folders), classnames.txt (all 1000 classes)}"
