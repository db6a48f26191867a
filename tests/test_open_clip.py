"""open_clip checkpoints on the vendored CLIP, against open_clip's own models on the same (random, tiny) weights.

Nothing is downloaded: the models are built from small configs in open_clip's format (tests/tiny_open_clip.py), and
the hub client's download function is replaced by a fake that writes the cache layout ``huggingface_hub`` uses.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

import huggingface_hub
import open_clip
import pytest
import torch
from open_clip.model import CLIP as OpenClipCLIP
from tiny_clip import make_tiny_clip
from tiny_open_clip import CONFIGS, FakeHub, make_open_clip, save_checkpoint
from torch import nn
from yacs.config import CfgNode

import clip
from clip import hub, open_clip_weights
from clip.model import QuickGELU, build_model, convert_weights
from clip.preprocessing import CLIP_MEAN, CLIP_STD, Preprocessing
from dassl.engine.precision import PRECISIONS
from trainers.backbone import load_clip, load_clip_at
from trainers.config import get_cfg
from trainers.prompting import PromptLearner, TextEncoder

PROMPTS = ["a photo of a cat.", "a bright color photo of a dog.", "x"]


def image_size(model: OpenClipCLIP) -> int:
    size = model.visual.image_size  # a pair for ViTs, an int for ResNets
    return size[0] if isinstance(size, tuple) else size


def inputs(model: OpenClipCLIP) -> tuple[torch.Tensor, torch.Tensor]:
    size = image_size(model)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, size, size, generator=generator), clip.tokenize(PROMPTS)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def outputs(model, image, text) -> dict[str, torch.Tensor]:
    """encode_image, encode_text and image->text logits of either implementation."""
    with torch.no_grad():
        logits = model.get_logits(image, text)[0] if isinstance(model, OpenClipCLIP) else model(image, text)[0]
        return {"image": model.encode_image(image), "text": model.encode_text(text), "logits": logits}


# ---- the architectures that run exactly ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_encoders_and_logits_equal_open_clip(kind, tmp_path):
    config = CONFIGS[kind]
    reference = make_open_clip(config)
    path = save_checkpoint(reference, config, tmp_path, {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    model, preprocessing = clip.load_model(path)
    assert model.dtype == torch.float32 and not model.training  # the weights' own precision: nothing is rounded
    assert all(torch.equal(tensor, reference.state_dict()[key]) for key, tensor in model.state_dict().items())
    image, text = inputs(reference)
    ours, theirs = outputs(model, image, text), outputs(reference, image, text)
    for key in theirs:
        assert ours[key].shape == theirs[key].shape
        assert max_diff(ours[key], theirs[key]) <= 1e-5, key
    assert theirs["logits"].std() > 0.1  # the comparison is not between near-constant outputs

    quick = config.get("quick_gelu", False)
    activations = {type(m) for m in model.modules() if isinstance(m, (nn.GELU, QuickGELU))}
    assert activations == {QuickGELU if quick else nn.GELU}
    assert preprocessing == Preprocessing(image_size(reference), (0.5,) * 3, (0.25,) * 3)

    # Heads come from the config (32 wide), not OpenAI's rule, which would give 1 text head and 1 or 8 image heads.
    resnet = kind == "resnet"
    vision_heads = model.visual.attnpool.num_heads if resnet else model.visual.transformer.resblocks[0].attn.heads
    assert (vision_heads, model.transformer.resblocks[0].attn.heads) == (4 if resnet else 2, 2)
    # What the weights cannot tell matters: the other activation or OpenAI's heads give other numbers.
    state_dict = reference.state_dict()
    other_activation = build_model(state_dict, activation="gelu" if quick else "quick_gelu",
                                   vision_heads=vision_heads, transformer_heads=2, half=False)
    openai_heads = build_model(state_dict, activation="quick_gelu" if quick else "gelu", half=False)
    for wrong in (other_activation, openai_heads):
        assert max_diff(outputs(wrong, image, text)["text"], theirs["text"]) > 1e-3


# ---- precision: the weights' own unless the run asks for less ----------------------------------------------------


def backbone_cfg(path: str, size: int = 32) -> CfgNode:
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.BACKBONE.NAME", path, "INPUT.SIZE", f"({size}, {size})"])
    return cfg


@pytest.mark.parametrize("prec", PRECISIONS)
def test_open_clip_fp32_weights_stay_fp32_unless_the_run_asks_for_fp16(prec, tmp_path):
    config = CONFIGS["vit_gelu"]
    reference = make_open_clip(config)
    model = load_clip_at(backbone_cfg(save_checkpoint(reference, config, tmp_path)), prec)
    weights = reference.state_dict()
    # fp32, amp and bf16 run over the checkpoint's fp32 weights, bit for bit (autocast lowers only the arithmetic);
    # fp16 is the original's half layout, to which fp32 weights are rounded.
    assert model.dtype == (torch.float16 if prec == "fp16" else torch.float32)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[key].to(tensor.dtype)), key
    assert {t.dtype for t in model.state_dict().values()} == ({torch.float16, torch.float32} if prec == "fp16"
                                                               else {torch.float32})


def test_checkpoints_stored_in_half_keep_openais_layout(tmp_path):
    """OpenAI's releases hold their weights in half: they load in that layout, and fp32 runs hold the same values."""
    released = make_tiny_clip("vit")
    convert_weights(released)
    path = str(tmp_path / "released.pt")
    torch.save(released.state_dict(), path)
    dtypes = {key: tensor.dtype for key, tensor in released.state_dict().items()}
    assert {key: tensor.dtype for key, tensor in clip.load_model(path)[0].state_dict().items()} == dtypes
    for prec in PRECISIONS:
        model = load_clip_at(backbone_cfg(path), prec)
        assert model.dtype == (torch.float16 if prec == "fp16" else torch.float32)
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, released.state_dict()[key].to(tensor.dtype)), (prec, key)


def test_safetensors_checkpoints_load_and_need_their_package(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    config = CONFIGS["vit_quickgelu"]
    reference = make_open_clip(config)
    save_checkpoint(reference, config, tmp_path)
    path = str(tmp_path / "open_clip_model.safetensors")
    save_file(reference.state_dict(), path)
    model, _ = clip.load_model(path)
    image, text = inputs(reference)
    assert max_diff(outputs(model, image, text)["logits"], outputs(reference, image, text)["logits"]) <= 1e-5
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(RuntimeError, match=r"needs the safetensors package: run `pip install safetensors`"):
        clip.load_model(path)


def test_prompt_learner_with_a_real_prompt_gives_open_clip_text_features(tmp_path):
    config = CONFIGS["vit_gelu"]
    reference = make_open_clip(config)
    path = save_checkpoint(reference, config, tmp_path)
    cfg = CfgNode({"MODEL": CfgNode({"BACKBONE": CfgNode({"NAME": path, "DOWNLOAD_ROOT": ""})})})
    model = load_clip(cfg)[0]
    # [SOS] [A1 A1] color [ctx ctx] <class>. [EOS], with the soft tokens set to the embeddings of real words
    learner = PromptLearner(model, ["dog", "sea lion"], n_ctx=2, attributes=[("color", 2)])
    with torch.no_grad():
        learner.ctx_att1.copy_(model.token_embedding(clip.tokenize("a bright")[0, 1:3]))
        learner.ctx.copy_(model.token_embedding(clip.tokenize("photo of")[0, 1:3]))
        ours = TextEncoder(model)(learner(), learner.eot)
        sentences = ["a bright color photo of dog.", "a bright color photo of sea lion."]
        theirs = reference.encode_text(open_clip.get_tokenizer("ViT-B-16")(sentences))
    assert max_diff(ours, theirs) <= 1e-5


def test_our_tokenizer_is_open_clips_for_these_models():
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    texts = ["A Photo of a CAT!", "  playfulness  and   energy ", "ünïcödé & émojis 🙂", "x" * 300]
    assert torch.equal(clip.tokenize(texts, truncate=True), tokenizer(texts))


# ---- refusals ---------------------------------------------------------------------------------------------------


def _with(section: str | None, **settings) -> dict:
    config = json.loads(json.dumps(CONFIGS["vit_gelu"]))
    (config if section is None else config[section]).update(settings)
    return config


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (_with("vision_cfg", ls_init_value=0.1), "vision_cfg.ls_init_value is 0.1, not None"),
        (_with("vision_cfg", pool_type="avg"), "vision_cfg.pool_type is 'avg', not 'tok'"),
        (_with("vision_cfg", no_ln_pre=True), "vision_cfg.no_ln_pre is True"),
        (_with("vision_cfg", final_ln_after_pool=True), "vision_cfg.final_ln_after_pool is True"),
        (_with("vision_cfg", attentional_pool=True, attn_pooler_heads=2), "vision_cfg.attentional_pool is True"),
        (_with("text_cfg", pool_type="last"), "text_cfg.pool_type is 'last', not 'argmax'"),
        (_with("text_cfg", proj_bias=True), "text_cfg.proj_bias is True"),
        (_with("text_cfg", no_causal_mask=True), "text_cfg.no_causal_mask is True"),
        (_with(None, init_logit_bias=-10.0), "init_logit_bias is -10.0, not None"),
    ],
)
def test_unsupported_architectures_are_refused_in_one_line(config, reason, tmp_path):
    path = save_checkpoint(make_open_clip(config), config, tmp_path)
    with pytest.raises(ValueError) as info:
        clip.load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"open_clip model {path!r} cannot run on this CLIP: ")
    assert reason in message
    assert "Supported: " in message and "ViT-B-16, " in message and "RN50x64" in message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ViT-B-16-SigLIP/webli", "init_logit_bias is -10"),
        ("convnext_base_w/laion2b_s13b_b82k", "vision_cfg.timm_model_name is 'convnext_base'"),
        ("coca_ViT-B-32/laion2b_s13b_b90k", "text_cfg.embed_cls is True"),
        ("xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", "text_cfg.hf_tokenizer_name is 'xlm-roberta-base'"),
        ("ViT-L-14-CLIPA/datacomp1b", "vision_cfg.no_ln_pre is True"),
        ("ViT-H-14-worldwide/metaclip2_worldwide", "text_cfg.pool_type is 'eos'"),
        ("EVA02-B-16/merged2b_s8b_b131k", "vision_cfg.timm_model_name"),
    ],
)
def test_unsupported_open_clip_tags_are_refused_before_any_download(name, reason, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", None)  # any download attempt would fail loudly
    with pytest.raises(ValueError) as info:
        clip.load_model(name)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"open_clip model {name.split('/')[0]!r} cannot run")
    assert reason in message and "Supported: " in message


def test_foreign_weights_under_a_supported_config_are_refused(tmp_path):
    layer_scaled = make_open_clip(_with("vision_cfg", ls_init_value=0.1))
    path = save_checkpoint(layer_scaled, CONFIGS["vit_gelu"], tmp_path)  # the config claims a plain ViT
    with pytest.raises(ValueError, match=r"^open_clip model .*unexpected visual\.transformer\.resblocks\.N\.ls_1\."
                                         r"gamma.*Supported: [^\n]*$"):
        clip.load_model(path)


def test_named_model_checks_the_weights_sizes_and_tags(tmp_path):
    path = save_checkpoint(make_open_clip(CONFIGS["vit_gelu"]), CONFIGS["vit_gelu"], tmp_path / "tiny")
    os.remove(tmp_path / "tiny" / open_clip_weights.CONFIG_FILE)
    with pytest.raises(ValueError, match=r"not those of open_clip model 'ViT-B-16/.*vision_width 64 in the weights, "
                                         r"768 in the config"):
        clip.load_model(f"ViT-B-16/{path}")
    with pytest.raises(RuntimeError, match=r"'laion9b' is neither a pretrained tag of open_clip model 'ViT-B-16'.*"
                                           r"its tags: openai, laion400m_e31"):
        clip.load_model("ViT-B-16/laion9b")
    with pytest.raises(RuntimeError, match=r"'ViT-B/99' is neither a known name.*ViT-B/16.*open_clip"):
        clip.load_model("ViT-B/99")


def test_every_open_clip_tag_of_an_openai_layout_model_is_listed_as_open_clip_has_it():
    """The package's table against the installed open_clip's registry, both ways."""
    from open_clip.pretrained import get_pretrained_cfg

    for name in open_clip.list_models():
        config = open_clip.get_model_config(name)
        supported = not open_clip_weights.unsupported_settings(config)
        assert supported == (name in open_clip_weights.MODEL_CONFIGS), name
        if not supported:
            continue
        assert open_clip_weights.MODEL_CONFIGS[name] == config, name
        tags = open_clip_weights.pretrained_tags(name)
        assert list(tags) == open_clip.list_pretrained_tags_by_model(name), name
        for tag, entry in tags.items():
            theirs = get_pretrained_cfg(name, tag)
            assert theirs["hf_hub"] == entry["hf_hub"] + "/", (name, tag)
            assert theirs.get("quick_gelu", False) == entry.get("quick_gelu", False), (name, tag)
            record = Preprocessing(224, **{k: v for k, v in entry.items() if k in ("mean", "std", "interpolation",
                                                                                   "resize_mode")})
            assert record == Preprocessing(224, theirs["mean"], theirs["std"], theirs["interpolation"],
                                           theirs["resize_mode"]), (name, tag)
    assert "ViT-B-16/laion2b_s34b_b88k" in clip.open_clip_tags()
    assert len(clip.open_clip_tags()) == len(set(clip.open_clip_tags())) == 96


# ---- downloads through huggingface_hub (faked: no network) -------------------------------------------------------


@pytest.fixture
def tiny_tag(monkeypatch, tmp_path):
    """A registry entry "Tiny-ViT/laion_tiny" on a fake hub, and the open_clip model its file holds."""
    config = CONFIGS["vit_gelu"]
    reference = make_open_clip(config)
    path = tmp_path / "weights.bin"
    torch.save(reference.state_dict(), path)
    fake = FakeHub({("laion/Tiny-ViT", open_clip_weights.WEIGHTS_FILE): path.read_bytes()})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setitem(open_clip_weights.MODEL_CONFIGS, "Tiny-ViT", config)
    monkeypatch.setitem(open_clip_weights._PRETRAINED, "Tiny-ViT", {
        "laion_tiny": {"hf_hub": "laion/Tiny-ViT", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                       "resize_mode": "squash"},
    })
    return fake, reference


def test_tag_downloads_into_the_cache_once_and_matches_open_clip(tiny_tag, tmp_path):
    fake, reference = tiny_tag
    cache = tmp_path / "hub"
    model, preprocessing = clip.load_model("Tiny-ViT/laion_tiny", download_root=cache)
    assert fake.downloads == [("laion/Tiny-ViT", open_clip_weights.WEIGHTS_FILE)]
    assert preprocessing == Preprocessing(32, (0.5,) * 3, (0.5,) * 3, resize_mode="squash")
    image, text = inputs(reference)
    theirs = outputs(reference, image, text)
    for key, value in outputs(model, image, text).items():
        assert max_diff(value, theirs[key]) <= 1e-5, key

    fake.online = False  # the verified cached copy is enough
    again, _ = clip.load_model("Tiny-ViT/LAION-tiny", download_root=cache)  # open_clip's tag spelling rule
    assert len(fake.downloads) == 1
    assert torch.equal(again.encode_text(text), model.encode_text(text))


def test_model_name_with_a_local_file_builds_that_config(tiny_tag, tmp_path):
    fake, reference = tiny_tag
    path = save_checkpoint(reference, CONFIGS["vit_gelu"], tmp_path / "copy", {"mean": [0.5] * 3, "std": [0.5] * 3})
    model, preprocessing = clip.load_model(f"Tiny-ViT/{path}")
    assert fake.downloads == []
    assert preprocessing == Preprocessing(32, (0.5,) * 3, (0.5,) * 3)  # from the config beside the file
    image, text = inputs(reference)
    assert max_diff(outputs(model, image, text)["logits"], outputs(reference, image, text)["logits"]) <= 1e-5
    os.remove(tmp_path / "copy" / open_clip_weights.CONFIG_FILE)
    assert clip.load_model(f"Tiny-ViT/{path}")[1] == Preprocessing(32)  # OpenAI's


def test_damaged_cached_file_is_downloaded_again(tiny_tag, tmp_path):
    fake, _ = tiny_tag
    cache = tmp_path / "hub"
    path = hub.download("laion/Tiny-ViT", open_clip_weights.WEIGHTS_FILE, cache, "Tiny-ViT", "laion_tiny")
    with open(os.path.realpath(path), "r+b") as file:
        file.truncate(100)
    with pytest.warns(RuntimeWarning, match="does not match the hash"):
        assert clip.load_model("Tiny-ViT/laion_tiny", download_root=cache)[0] is not None
    assert len(fake.downloads) == 2
    assert hub.matches_cache_name(path)


def test_offline_without_the_file_explains_how_to_place_it(tiny_tag, tmp_path):
    fake, _ = tiny_tag
    fake.online = False
    cache = tmp_path / "hub"
    with pytest.raises(RuntimeError) as info:
        clip.load_model("Tiny-ViT/laion_tiny", download_root=cache)
    message = str(info.value)
    for part in (open_clip_weights.WEIGHTS_FILE, "Tiny-ViT/laion_tiny", "laion/Tiny-ViT", str(cache),
                 "LocalEntryNotFoundError", "huggingface_hub.hf_hub_download('laion/Tiny-ViT', ",
                 "MODEL.BACKBONE.DOWNLOAD_ROOT", "MODEL.BACKBONE.NAME to 'Tiny-ViT/<path of the file>'"):
        assert part in message
    assert "\n" not in message
    default_cache = huggingface_hub.constants.HF_HUB_CACHE
    with pytest.raises(RuntimeError, match=re.escape(f"into the cache folder {default_cache} ")):
        clip.load_model("Tiny-ViT/laion_tiny")  # no download root: huggingface_hub's own cache


def test_missing_huggingface_hub_names_the_pip_install(tiny_tag, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if it were not installed
    with pytest.raises(RuntimeError, match=r"needs the huggingface_hub package: run `pip install huggingface_hub`"):
        clip.load_model("Tiny-ViT/laion_tiny")


# A fresh interpreter where neither package can be imported loads the package, train.py and the trainers, local
# open_clip files (and refuses one of another architecture) and OpenAI's; a name outside the package's list is no
# open_clip name there, as open_clip's registry is what tells which model it is.
_WITHOUT_OPEN_CLIP = """
import sys
sys.modules["open_clip"] = sys.modules["huggingface_hub"] = None
import clip, train, trainers
from clip.preprocessing import Preprocessing
open_clip_file, refused_file, openai_file = sys.argv[1:]
assert clip.load_model(open_clip_file)[1] == Preprocessing(32, (0.5,) * 3, (0.5,) * 3)
assert clip.load_model(openai_file)[1] == Preprocessing(32)
for name, expected in [(refused_file, "vision_cfg.ls_init_value is 0.1"),
                       ("convnext_base_w/laion2b_s13b_b82k", "is neither a known name nor an existing file")]:
    try:
        clip.load_model(name)
    except clip.CheckpointError as err:
        assert expected in str(err), err
    else:
        raise AssertionError(name)
"""


def test_local_files_and_openai_checkpoints_need_neither_open_clip_nor_huggingface_hub(tmp_path, tiny_vit_path):
    config, refused = CONFIGS["vit_gelu"], _with("vision_cfg", ls_init_value=0.1)
    path = save_checkpoint(make_open_clip(config), config, tmp_path / "hub_layout", {"mean": [0.5] * 3,
                                                                                     "std": [0.5] * 3})
    refused_path = save_checkpoint(make_open_clip(refused), refused, tmp_path / "refused")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", _WITHOUT_OPEN_CLIP, path, refused_path, str(tiny_vit_path)],
                            cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_small_files_are_checked_against_their_git_blob_id(tmp_path):
    body = b'{"model_cfg": {}}'
    blob_id = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
    (tmp_path / blob_id).write_bytes(body)
    assert hub.matches_cache_name(str(tmp_path / blob_id))
    (tmp_path / blob_id).write_bytes(body + b" ")
    assert not hub.matches_cache_name(str(tmp_path / blob_id))
    (tmp_path / "by_hand.bin").write_bytes(body)  # nothing to check it against
    assert hub.matches_cache_name(str(tmp_path / "by_hand.bin"))


# ---- preprocessing records ------------------------------------------------------------------------------------


def test_openai_checkpoints_keep_openai_preprocessing(tiny_vit_path):
    model, preprocessing = clip.load_model(str(tiny_vit_path))
    assert preprocessing == Preprocessing(32, CLIP_MEAN, CLIP_STD, "bicubic", "shortest")
    assert model.dtype == torch.float32  # the file holds fp32 weights


def test_preprocessing_transform_follows_the_record():
    from PIL import Image

    image = Image.new("RGB", (64, 32), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 8, 32))  # a black stripe on the left
    crop = Preprocessing(16, (0.5,) * 3, (0.5,) * 3).transform()(image)
    squash = Preprocessing(16, (0.5,) * 3, (0.5,) * 3, resize_mode="squash").transform()(image)
    assert crop.shape == squash.shape == (3, 16, 16)
    assert crop.min() > 0.9  # the centre crop drops the stripe
    assert squash[:, :, 0].max() < -0.9  # squashing keeps it
    with pytest.raises(ValueError, match="resize_mode 'longest'"):
        Preprocessing(16, resize_mode="longest")
