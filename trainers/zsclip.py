"""Zero-shot CLIP with one hand-written template per dataset: the baseline every prompt learner is compared to."""

import torch
import torch.nn.functional as F

import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from trainers.prompting import autocast, clean_classname, load_clip, resolve_precision

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """Classifies with the text features of "<template>.format(class name)", computed once."""

    def build_model(self) -> None:
        cfg = self.cfg
        self.prec = resolve_precision(cfg.TRAINER.COOP.PREC, self.device)
        clip_model = load_clip(cfg)
        if self.prec != "fp16":
            clip_model.float()
        self.clip_model = clip_model.to(self.device)
        template = CUSTOM_TEMPLATES.get(cfg.DATASET.NAME, DEFAULT_TEMPLATE)
        prompts = [template.format(clean_classname(c)) for c in self.dm.dataset.classnames]
        print(f"Prompt example: {prompts[0]}")
        with torch.no_grad(), autocast(self.prec, self.device):
            features = clip_model.encode_text(clip.tokenize(prompts).to(self.device))
        self.text_features = F.normalize(features.float(), dim=-1)

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with autocast(self.prec, self.device):
            image_features = self.clip_model.encode_image(image.type(self.clip_model.dtype))
        image_features = F.normalize(image_features.float(), dim=-1)
        return self.clip_model.logit_scale.exp().float() * image_features @ self.text_features.t()
