"""EuroSAT: 10 land-use classes of Sentinel-2 tiles, split 50/20/30 per class."""

from dassl.data.datasets import DATASET_REGISTRY

from .splits import SplitDataset, read_and_split_data

# The folder names are CamelCase codes; prompts use these descriptive names (Forest and River stay as they are).
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(SplitDataset):
    dataset_dir = "eurosat"
    image_dir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    layout = "eurosat/{2750/<Class>/*.jpg, split_zhou_EuroSAT.json}"

    def make_split(self):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
