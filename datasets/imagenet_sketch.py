"""ImageNet-Sketch: about 50,000 sketches of the 1000 ImageNet classes."""

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    # The original code read sketch/ while its docs said images/; either is accepted.
    image_dirs = ["sketch", "images"]
    layout = "imagenet-sketch/{sketch/<wnid>/*.JPEG (or images/<wnid>/), classnames.txt}"
