"""Tiny random open_clip models, their checkpoint files in the hub's layout, and a fake hub client, for tests
(open_clip is a test-only dependency; nothing is downloaded).

The configs are in open_clip's format. Heads are 32 wide and the GELU ViT's MLPs 3x, so neither OpenAI's head rule
(64-wide heads) nor its 4x MLP would reproduce them.
"""

import hashlib
import json
import os

import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from open_clip.model import CLIP as OpenClipCLIP
from torch import nn

from clip import open_clip_weights

_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
CONFIGS = {
    "vit_gelu": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                                                "mlp_ratio": 3.0, "patch_size": 8}, "text_cfg": _TEXT},
    "vit_quickgelu": {"embed_dim": 32, "quick_gelu": True, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64,
                                                                         "head_width": 32, "patch_size": 8},
                      "text_cfg": _TEXT},
    "resnet": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16,
                                              "head_width": 128, "patch_size": None}, "text_cfg": _TEXT},
}


def make_open_clip(config: dict, seed: int = 0) -> OpenClipCLIP:
    """open_clip's CLIP in eval mode, every tensor moved off its init (bn3 scales start at zero), in fp32 as open_clip's
    released checkpoints are: values an fp16 rounding would change."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OpenClipCLIP(**json.loads(json.dumps(config))).eval()
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if not tensor.is_floating_point() or name == "logit_scale":
                    continue
                noise = 0.05 * torch.randn(tensor.shape)
                tensor.copy_(tensor.abs() + 0.5 + noise.abs() if name.endswith("running_var") else tensor + noise)
    return model


def save_checkpoint(model: nn.Module, config: dict, folder, preprocess: dict | None = None) -> str:
    """The hub's layout: the state dict with an open_clip_config.json beside it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, open_clip_weights.WEIGHTS_FILE)
    torch.save(model.state_dict(), path)
    with open(os.path.join(folder, open_clip_weights.CONFIG_FILE), "w") as file:
        json.dump({"model_cfg": config, "preprocess_cfg": preprocess or {}}, file)
    return path


class FakeHub:
    """``hf_hub_download`` writing huggingface_hub's cache layout (blobs named by SHA-256, snapshot links);
    offline it serves only what is cached, as the real client does."""

    def __init__(self, files: dict[tuple[str, str], bytes]):
        self.files, self.online, self.downloads = files, True, []

    def __call__(self, repo_id, filename, *, cache_dir, force_download=False, **unused):
        storage = os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))
        pointer = os.path.join(storage, "snapshots", "0" * 40, filename)
        if os.path.exists(pointer) and not force_download:
            return pointer
        if not self.online:
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic "
                                          "has been disabled.")
        body = self.files[(repo_id, filename)]
        blob = os.path.join(storage, "blobs", hashlib.sha256(body).hexdigest())
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        os.makedirs(os.path.dirname(pointer), exist_ok=True)
        with open(blob, "wb") as file:
            file.write(body)
        if not os.path.islink(pointer):
            os.symlink(blob, pointer)
        self.downloads.append((repo_id, filename))
        return pointer
