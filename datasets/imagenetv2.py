"""ImageNetV2 (matched frequency): 10,000 test images of the 1000 ImageNet classes in folders 0..999."""

import os

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils.errors import UserError

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    # The archive unpacks into the subfolder; the original code read the numbered folders directly under
    # imagenetv2/. Both layouts work.
    image_dirs = ["imagenetv2-matched-frequency-format-val", ""]
    layout = "imagenetv2/{imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg, classnames.txt}"

    def label_folders(self, all_wnids):
        """Folder i holds class i, the i-th line of classnames.txt."""
        folders = [str(label) for label in range(len(all_wnids))]
        missing = [f for f in folders if not os.path.isdir(os.path.join(self.image_dir, f))]
        if missing:
            raise UserError(f"ImageNetV2: {len(missing)} of {len(folders)} class folders are missing in "
                            f"{self.image_dir} (first: {missing[:3]}); expected {self.layout}.")
        return folders, all_wnids
