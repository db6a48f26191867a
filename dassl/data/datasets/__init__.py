from .base_dataset import DatasetBase, Datum, check_image_files, datums_from_entries, subsample_classes
from .build import DATASET_REGISTRY, build_dataset

__all__ = ["DATASET_REGISTRY", "DatasetBase", "Datum", "build_dataset", "check_image_files",
           "datums_from_entries", "subsample_classes"]
