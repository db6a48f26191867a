"""open_clip checkpoints whose architecture is OpenAI's, run on this package's CLIP.

open_clip's ``CLIP`` class with its default towers stores the same tensors under the same keys as OpenAI's
checkpoints. What the weights do not tell comes from open_clip's model config (its JSON format): the MLP activation
(``quick_gelu``) and the head counts (``head_width``, ``heads``). Configs that change the computation in any other
way (another pooling, tokenizer or tower, extra norms, layer scale, ...) are refused with one line saying why.

``open_clip_models.json`` holds open_clip's model configs that pass that check and its pretrained tags for them
(Hugging Face repository, QuickGELU, preprocessing where it is not OpenAI's); ``tests/test_open_clip.py`` checks it
against open_clip's own registry.
"""

import json
import os
from dataclasses import dataclass

import torch

from . import hub
from .errors import CheckpointError
from .model import CLIP, build_model, infer_config
from .preprocessing import Preprocessing

WEIGHTS_FILE = "open_clip_pytorch_model.bin"  # the state dict every open_clip hub repository holds
CONFIG_FILE = "open_clip_config.json"  # {"model_cfg": ..., "preprocess_cfg": ...} beside the weights on the hub

with open(os.path.join(os.path.dirname(__file__), "open_clip_models.json")) as _file:
    _REGISTRY = json.load(_file)
MODEL_CONFIGS: dict[str, dict] = _REGISTRY["models"]
_PRETRAINED: dict[str, dict[str, dict]] = _REGISTRY["pretrained"]
_QUICKGELU = "-quickgelu"
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")

SUPPORTED = (
    "open_clip models with OpenAI's ViT or ModifiedResNet image tower and text transformer (CLIP's BPE tokenizer, "
    "pooling at the EOT token), GELU or QuickGELU: "
    + ", ".join(name for name in MODEL_CONFIGS if not name.endswith(_QUICKGELU))
    + f" and their {_QUICKGELU} variants (docs/BACKBONES.md)"
)

_ANY = None  # a setting that only sizes the model (read off the weights or the config) or only acts in training
# For the fields of open_clip's vision, text and top-level configs: the values under which it computes exactly what
# OpenAI's architecture computes (the first is OpenAI's), or _ANY.
_VISION_RULES = {
    "layers": _ANY, "width": _ANY, "head_width": _ANY, "mlp_ratio": _ANY, "patch_size": _ANY, "image_size": _ANY,
    "patch_dropout": _ANY, "output_tokens": _ANY, "attn_pooler_queries": _ANY, "attn_pooler_heads": _ANY,
    "timm_model_name": (None,), "timm_model_pretrained": _ANY, "timm_pool": _ANY, "timm_proj": _ANY,
    "timm_proj_bias": _ANY, "timm_drop": _ANY, "timm_drop_path": _ANY,
    "attentional_pool": (False,), "no_ln_pre": (False,), "final_ln_after_pool": (False,), "pool_type": ("tok",),
    "pos_embed_type": ("learnable",), "ls_init_value": (None,), "act_kwargs": (None,), "norm_kwargs": (None,),
    "block_type": (None, "default"), "qk_norm": (False,), "scaled_cosine_attn": (False,), "scale_heads": (False,),
    "scale_attn_inner": (False,), "scale_attn": (False,), "scale_fc": (False,),
}
_TEXT_RULES = {
    "context_length": _ANY, "width": _ANY, "heads": _ANY, "layers": _ANY, "mlp_ratio": _ANY, "pad_id": _ANY,
    "eos_id": _ANY, "output_tokens": _ANY, "hf_model_pretrained": _ANY, "hf_proj_type": _ANY, "hf_pooler_type": _ANY,
    "hf_model_name": (None,), "hf_tokenizer_name": (None,), "tokenizer_mode": (None,), "tokenizer_kwargs": (None,),
    "vocab_size": (49408,), "embed_cls": (False,), "no_causal_mask": (False,), "final_ln_after_pool": (False,),
    "pool_type": ("argmax",), "proj_bias": (False,), "proj_type": ("linear",), "ls_init_value": (None,),
    "act_kwargs": (None,), "norm_kwargs": (None,), "block_type": (None, "default"), "qk_norm": (False,),
    "scaled_cosine_attn": (False,), "scale_heads": (False,), "scale_attn_inner": (False,), "scale_attn": (False,),
    "scale_fc": (False,),
}
_TOP_RULES = {
    "embed_dim": _ANY, "quick_gelu": _ANY, "init_logit_scale": _ANY, "vision_cfg": _ANY, "text_cfg": _ANY,
    "custom_text": (False,), "init_logit_bias": (None,), "nonscalar_logit_scale": (False,),
}


def _check(section: str, settings: dict, rules: dict) -> list[str]:
    reasons = []
    for key, value in settings.items():
        if key not in rules:
            reasons.append(f"{section}{key} is a setting this CLIP does not know")
        elif rules[key] is not _ANY and value not in rules[key]:
            reasons.append(f"{section}{key} is {value!r}, not {rules[key][0]!r}")
    return reasons


def unsupported_settings(model_cfg: dict) -> list[str]:
    """Why an open_clip model config cannot run exactly on this CLIP, one reason per setting; [] when it can."""
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    reasons = _check("", model_cfg, _TOP_RULES)
    reasons += _check("vision_cfg.", vision, _VISION_RULES) + _check("text_cfg.", text, _TEXT_RULES)
    size, layers = vision.get("image_size", 224), vision.get("layers", 12)
    if isinstance(size, (list, tuple)) and len(set(size)) != 1:
        reasons.append(f"vision_cfg.image_size is {list(size)}, not square")
    if isinstance(layers, (list, tuple)) and len(layers) != 4:
        reasons.append(f"vision_cfg.layers is {list(layers)}, not a ResNet's four stages")
    return reasons


def refusal(label: str, reasons: list[str]) -> CheckpointError:
    return CheckpointError(f"open_clip model {label!r} cannot run on this CLIP: {'; '.join(reasons)}. Supported: "
                      f"{SUPPORTED}")


def pretrained_tags(model: str) -> dict[str, dict]:
    """{tag: entry} of a supported model name; an ``X-quickgelu`` name has X's QuickGELU tags, as in open_clip."""
    if model.endswith(_QUICKGELU):
        base = _PRETRAINED.get(model[: -len(_QUICKGELU)], {})
        return {tag: entry for tag, entry in base.items() if entry.get("quick_gelu")}
    return _PRETRAINED.get(model, {})


def available_tags() -> list[str]:
    """Every "<open_clip model>/<pretrained tag>" that loads here."""
    return [f"{model}/{tag}" for model in MODEL_CONFIGS for tag in pretrained_tags(model)]


@dataclass(frozen=True)
class Source:
    """An open_clip checkpoint file with the config it is built from; ``label`` names it in messages."""

    label: str
    path: str
    model_cfg: dict
    preprocess: dict


def _open_clip_config(model: str) -> dict | None:
    """open_clip's own config for a model name this package does not list, when open_clip is installed: it only
    serves to say why such a model is refused."""
    try:
        import open_clip
    except ImportError:
        return None
    return open_clip.get_model_config(model)


def _sibling_config(path: str) -> tuple[dict, dict] | None:
    """(model_cfg, preprocessing settings) of the ``open_clip_config.json`` beside the file at ``path`` (a hub
    repository's layout), or None when there is none."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_FILE)
    if not os.path.isfile(config_path):
        return None
    with open(config_path) as file:
        config = json.load(file)
    if not isinstance(config.get("model_cfg"), dict):
        raise CheckpointError(f"{config_path} has no model_cfg; it is not an open_clip config")
    preprocess = {k: v for k, v in config.get("preprocess_cfg", {}).items() if k in _PREPROCESS_KEYS}
    return config["model_cfg"], preprocess


def sibling_source(path: str) -> Source | None:
    """The checkpoint file at ``path`` built with the ``open_clip_config.json`` beside it; None when there is none."""
    sibling = _sibling_config(path)
    return None if sibling is None else Source(path, path, *sibling)


def named_source(name: str, download_root: str | os.PathLike | None) -> Source | None:
    """The checkpoint of "<open_clip model>/<pretrained tag>" (downloaded into the hub cache ``download_root``) or
    of "<open_clip model>/<local file>"; None when ``name`` names no open_clip model."""
    model, _, rest = name.partition("/")
    if not rest:
        return None
    if model not in MODEL_CONFIGS:
        config = _open_clip_config(model)
        if config is None:
            return None
        raise refusal(model, unsupported_settings(config) or ["it is not in this package's list of open_clip models"])
    config = MODEL_CONFIGS[model]
    tags = pretrained_tags(model)
    entry = tags.get(rest.lower().replace("-", "_"))  # open_clip's spelling rule for tags
    if entry is not None:
        path = hub.download(entry["hf_hub"], WEIGHTS_FILE, download_root, model, rest)
        # The tag records the activation the weights were trained with; open_clip only warns when the model name
        # says otherwise (e.g. ViT-B-16/metaclip_400m), this package follows the weights.
        config = {**config, "quick_gelu": config.get("quick_gelu", False) or entry.get("quick_gelu", False)}
        preprocess = {k: v for k, v in entry.items() if k in _PREPROCESS_KEYS}
        return Source(name, path, config, preprocess)
    path = os.path.expanduser(rest)
    if os.path.isfile(path):  # the named config; the preprocessing of a config beside the file, else OpenAI's
        sibling = _sibling_config(path)
        return Source(name, path, config, {} if sibling is None else sibling[1])
    known = f"its tags: {', '.join(tags)}" if tags else "it has no pretrained tags here"
    raise CheckpointError(f"{rest!r} is neither a pretrained tag of open_clip model {model!r} nor an existing file "
                       f"({known}); use '{model}/<tag>' or '{model}/<path of a checkpoint file>'")


def _key_pattern(key: str) -> str:
    return ".".join("N" if part.isdigit() else part for part in key.split("."))


def _foreign_keys(state_dict: dict, config: dict) -> list[str]:
    """The keys by which ``state_dict`` differs from OpenAI's layout of its sizes, as patterns (block numbers as N)."""
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised for real
        expected = set(CLIP(**config).state_dict())
    unexpected = {_key_pattern(k) for k in state_dict if k not in expected}
    missing = {_key_pattern(k) for k in expected if k not in state_dict}
    return [f"unexpected {k}" for k in sorted(unexpected)] + [f"missing {k}" for k in sorted(missing)]


def _sizes(model_cfg: dict) -> dict:
    """The CLIP arguments an open_clip config fixes (with open_clip's defaults for absent fields)."""
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    size, layers, width = vision.get("image_size", 224), vision.get("layers", 12), vision.get("width", 768)
    resnet = isinstance(layers, (list, tuple))
    text_width = text.get("width", 512)
    return dict(
        embed_dim=model_cfg["embed_dim"],
        image_resolution=size[0] if isinstance(size, (list, tuple)) else size,
        vision_layers=tuple(layers) if resnet else layers,
        vision_width=width,
        vision_patch_size=None if resnet else vision.get("patch_size", 16),
        vision_heads=width * (32 if resnet else 1) // vision.get("head_width", 64),
        vision_mlp_width=None if resnet else int(width * vision.get("mlp_ratio", 4.0)),
        context_length=text.get("context_length", 77),
        vocab_size=text.get("vocab_size", 49408),
        transformer_width=text_width,
        transformer_heads=text.get("heads", 8),
        transformer_layers=text.get("layers", 12),
        transformer_mlp_width=int(text_width * text.get("mlp_ratio", 4.0)),
        activation="quick_gelu" if model_cfg.get("quick_gelu") else "gelu",
    )


def _size_mismatches(state_dict: dict, config: dict) -> list[str]:
    """Where the sizes read off the weights differ from those the config fixes (head counts cannot be read)."""
    read = infer_config(state_dict)
    read.setdefault("transformer_mlp_width", 4 * read["transformer_width"])
    if config["vision_mlp_width"] is not None:  # a ViT
        read.setdefault("vision_mlp_width", 4 * read["vision_width"])
    return [f"{key} {value} in the weights, {config[key]} in the config" for key, value in read.items()
            if key != "transformer_heads" and value != config[key]]


def build(source: Source, state_dict: dict) -> tuple[CLIP, Preprocessing]:
    """CLIP (eval mode, in the precision of its weights: fp32 for open_clip's fp32 checkpoints) from an open_clip
    state dict, and its preprocessing."""
    reasons = unsupported_settings(source.model_cfg)
    if reasons:
        raise refusal(source.label, reasons)
    if all(key.startswith("module.") for key in state_dict):  # saved from a DistributedDataParallel wrapper
        state_dict = {key[len("module."):]: value for key, value in state_dict.items()}
    config = _sizes(source.model_cfg)
    try:
        differ = _size_mismatches(state_dict, config)
    except KeyError as err:
        raise refusal(source.label, [f"its weights lack {err}"] + _foreign_keys(state_dict, config)) from err
    if differ:
        raise CheckpointError(f"the weights in {source.path} are not those of open_clip model {source.label!r}: "
                         f"{'; '.join(differ)}")
    foreign = _foreign_keys(state_dict, config)
    if foreign:
        raise refusal(source.label, ["its weights do not have OpenAI's layout: " + ", ".join(foreign)])
    model = build_model(state_dict, activation=config["activation"], vision_heads=config["vision_heads"],
                        transformer_heads=config["transformer_heads"], half=None)
    return model, Preprocessing(model.visual.input_resolution, **source.preprocess)
