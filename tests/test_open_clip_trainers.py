"""Every trainer on an open_clip backbone, through train.py: one epoch of training and the test that ends it on a
tiny Caltech101, the run record naming the backbone, and the same scores again from the checkpoint (--eval-only).

The main backbone is a local open_clip checkpoint in the hub's layout (tests/tiny_open_clip.py): GELU, 32-wide
heads and 3x ViT MLPs, none of which OpenAI's layout would give, and its own preprocessing in open_clip_config.json.
"""

import math

import huggingface_hub
import open_clip
import pytest
import torch
from fake_data import build_from, original_anchor_file, run_args
from tiny_open_clip import CONFIGS, FakeHub, make_open_clip, save_checkpoint

import train
from clip import open_clip_weights
from clip.clip import file_sha256
from dassl.engine.records import read_record
from dassl.evaluation.evaluator import Classification
from datasets import catalog
from trainers.layout import clean_classname

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]  # the checkpoint's, not OpenAI's
PREPROCESS = {"mean": MEAN, "std": STD}
PIXELS = ["INPUT.PIXEL_MEAN", str(MEAN), "INPUT.PIXEL_STD", str(STD)]
OPTS = [  # on top of fake_data.TINY_RUN
    "OPTIM.MAX_EPOCH", "1",
    "OPTIM.WARMUP_EPOCH", "0",  # the configs' LR from the first step, so that one epoch moves the prompts
    "DATASET.SUBSAMPLE_CLASSES", "base",  # DePT's head learns the base classes
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "TRAINER.COOP.N_CTX", "2",
    "TRAINER.COCOOP.N_CTX", "2",
    "TRAINER.MAPLE.N_CTX", "2",
    "TRAINER.MAPLE.PROMPT_DEPTH", "2",
    "TRAINER.ATPROMPT.N_ATT1", "2",
    "TRAINER.ATPROMPT.N_ATT2", "2",
    "TRAINER.COOP.N_ATT1", "2",  # the attribute search's soft tokens per attribute
    "TRAINER.ATTRIBUTE_SEARCH.BASES", "['color', 'size']",  # three candidates
]  # fmt: skip
CONFIG_FILES = {
    "CoOp": "CoOp/vit_b16.yaml",
    "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
    "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "DePT": "DePT/vit_b16_ep10_bs4_lr35.yaml",
    "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv4.yaml",
    "ZeroshotCLIP": "CoOp/vit_b16.yaml",
    "AttributeCompute": "CoOp/vit_b16.yaml",
}
TRAINED = ["CoOp", "CoOp_ATP", "CoCoOp", "CoCoOp_ATP", "MaPLe", "MaPLe_ATP", "DePT", "DePT_ATP", "KgCoOp",
           "KgCoOp_ATP", "AttributeCompute", "CoOp_AnchorOPT", "CoCoOp_AnchorOPT", "MaPLe_AnchorOPT",
           "DePT_AnchorOPT"]


@pytest.fixture(scope="module")
def open_clip_path(tmp_path_factory):
    """A GELU ViT in open_clip's format with the hub's open_clip_config.json beside it."""
    config = CONFIGS["vit_gelu"]
    return save_checkpoint(make_open_clip(config), config, tmp_path_factory.mktemp("open_clip"), PREPROCESS)


@pytest.fixture(scope="module")
def open_clip_resnet_path(tmp_path_factory):
    """A ModifiedResNet in open_clip's format (64-pixel images, 128-wide attention-pool heads)."""
    config = CONFIGS["resnet"]
    return save_checkpoint(make_open_clip(config), config, tmp_path_factory.mktemp("open_clip_rn"), PREPROCESS)


@pytest.fixture(scope="module")
def anchor_options(tmp_path_factory):
    """AnchorOPT's options with an anchor file in the original's format, for the backbone's text width."""
    path = original_anchor_file(tmp_path_factory.mktemp("anchor") / "model.pth.tar",
                                CONFIGS["vit_gelu"]["text_cfg"]["width"])
    return ["TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(path), "TRAINER.ANCHOROPT.N_CTX", "2"]


@pytest.fixture
def scores(monkeypatch):
    """The scores of every evaluation that runs in the test, one tensor per evaluation."""
    evaluations = []
    reset, process = Classification.reset, Classification.process

    def reset_and_start(self):
        reset(self)
        evaluations.append([])

    def record(self, mo, gt):
        evaluations[-1].append(mo.detach().clone())
        process(self, mo, gt)

    monkeypatch.setattr(Classification, "reset", reset_and_start)
    monkeypatch.setattr(Classification, "process", record)
    return lambda: [torch.cat(batches) for batches in evaluations if batches]


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    config = CONFIG_FILES[trainer.removesuffix("_ATP").removesuffix("_AnchorOPT")]
    return run_args(data_root, out, trainer, clip_path, config, *OPTS, *PIXELS, *opts, extra=extra)


def finished_record(folder, clip_path, kind, name=None):
    """The record of a finished run on the backbone `clip_path` (given as `name`); its log."""
    record = read_record(str(folder))
    assert record["status"] == "finished" and record["kind"] == kind
    assert record["backbone"] == {"name": name or str(clip_path), "sha256": file_sha256(str(clip_path))}
    assert math.isfinite(record["metrics"]["accuracy"]) and 0 <= record["metrics"]["accuracy"] <= 100
    log = (folder / "log.txt").read_text()
    assert "Warning:" not in log  # the checkpoint's own preprocessing was given
    return record, log


@pytest.mark.parametrize("trainer", TRAINED)
def test_one_epoch_and_its_evaluation(tmp_path, data_root, open_clip_path, scores, anchor_options, trainer):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    opts = anchor_options if trainer.endswith("_AnchorOPT") else []
    assert train.main(args(data_root, train_dir, trainer, open_clip_path, *opts)) == 0
    search = trainer == "AttributeCompute"
    record, log = finished_record(train_dir, open_clip_path, "search" if search else "train")
    assert record["epochs"] == 1 and "Finish training" in log
    if trainer.endswith("_ATP"):
        assert record["prompt"]["attributes"] == ["shape", "size"]  # Caltech101's, as on OpenAI's backbones
    final = scores()[-1]
    assert final.shape == (9, 3) and torch.isfinite(final).all()  # 3 test images of each of the 3 base classes

    if search:
        assert (train_dir / "attribute_search.json").is_file()
        return
    # The trained checkpoint, evaluated on its own, scores the test images as the test that ended training did.
    eval_args = ["--eval-only", "--model-dir", str(train_dir), "--load-epoch", "1"]
    assert train.main(args(data_root, eval_dir, trainer, open_clip_path, *opts, extra=eval_args)) == 0
    evaluation, _ = finished_record(eval_dir, open_clip_path, "eval")
    assert evaluation["metrics"] == record["metrics"]
    assert evaluation["source"]["fingerprint"] == record["fingerprint"]
    assert torch.allclose(scores()[-1], final, rtol=0, atol=1e-5)
    # ... and the checkpoint decides them: the untrained model (the same seed) scores otherwise.
    build_from(args(data_root, tmp_path / "untrained", trainer, open_clip_path, *opts)).test()
    assert (scores()[-1] - final).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["vit_gelu", "resnet"])
def test_zero_shot_scores_are_open_clips(tmp_path, data_root, request, scores, kind):
    """Zero-shot CLIP through train.py scores the test images as open_clip's own model on the same weights."""
    path = request.getfixturevalue("open_clip_resnet_path" if kind == "resnet" else "open_clip_path")
    size = "(64, 64)" if kind == "resnet" else "(32, 32)"
    out = tmp_path / "zs"
    assert train.main(args(data_root, out, "ZeroshotCLIP", path, "INPUT.SIZE", size, extra=["--eval-only"])) == 0
    finished_record(out, path, "eval")

    trainer = build_from(args(data_root, tmp_path / "images", "ZeroshotCLIP", path, "INPUT.SIZE", size))
    images = torch.cat([trainer.parse_batch_test(batch)[0] for batch in trainer.test_loader])
    prompts = [catalog.template("Caltech101").format(clean_classname(c)) for c in trainer.dm.dataset.classnames]
    with torch.no_grad():
        theirs = make_open_clip(CONFIGS[kind]).get_logits(images, open_clip.get_tokenizer("ViT-B-16")(prompts))[0]
    assert theirs.std() > 0.1
    assert torch.allclose(scores()[0], theirs, rtol=0, atol=1e-5)


def test_coop_on_an_open_clip_resnet(tmp_path, data_root, open_clip_resnet_path):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    opts = ("INPUT.SIZE", "(64, 64)")
    assert train.main(args(data_root, train_dir, "CoOp_ATP", open_clip_resnet_path, *opts)) == 0
    record, _ = finished_record(train_dir, open_clip_resnet_path, "train")
    eval_args = ["--eval-only", "--model-dir", str(train_dir)]
    assert train.main(args(data_root, eval_dir, "CoOp_ATP", open_clip_resnet_path, *opts, extra=eval_args)) == 0
    assert finished_record(eval_dir, open_clip_resnet_path, "eval")[0]["metrics"] == record["metrics"]


# ---- the other ways to name an open_clip checkpoint --------------------------------------------------------------


@pytest.fixture
def tiny_tag(monkeypatch, tmp_path):
    """A registry entry "Tiny-ViT/laion_tiny" on a fake hub, with the checkpoint's preprocessing."""
    config = CONFIGS["vit_gelu"]
    path = tmp_path / "weights.bin"
    torch.save(make_open_clip(config).state_dict(), path)
    fake = FakeHub({("laion/Tiny-ViT", open_clip_weights.WEIGHTS_FILE): path.read_bytes()})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setitem(open_clip_weights.MODEL_CONFIGS, "Tiny-ViT", config)
    monkeypatch.setitem(open_clip_weights._PRETRAINED, "Tiny-ViT", {"laion_tiny": {"hf_hub": "laion/Tiny-ViT",
                                                                                   **PREPROCESS}})
    return fake, path


def test_a_pretrained_tag_trains_and_is_evaluated_offline_from_the_cache(tmp_path, data_root, tiny_tag):
    fake, weights = tiny_tag
    cache = tmp_path / "hub"
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    tag = ("MODEL.BACKBONE.NAME", "Tiny-ViT/laion_tiny", "MODEL.BACKBONE.DOWNLOAD_ROOT", str(cache))
    assert train.main(args(data_root, train_dir, "CoOp_ATP", "unused", *tag)) == 0
    assert fake.downloads == [("laion/Tiny-ViT", open_clip_weights.WEIGHTS_FILE)]
    record, _ = finished_record(train_dir, weights, "train", name="Tiny-ViT/laion_tiny")

    fake.online = False
    eval_args = ["--eval-only", "--model-dir", str(train_dir)]
    assert train.main(args(data_root, eval_dir, "CoOp_ATP", "unused", *tag, extra=eval_args)) == 0
    assert len(fake.downloads) == 1
    assert finished_record(eval_dir, weights, "eval", name="Tiny-ViT/laion_tiny")[0]["metrics"] == record["metrics"]


def test_a_model_name_with_a_local_file(tmp_path, data_root, tiny_tag, open_clip_path):
    """"<open_clip model>/<file>": the model's config, the preprocessing of the config beside the file."""
    name = f"Tiny-ViT/{open_clip_path}"
    out = tmp_path / "run"
    assert train.main(args(data_root, out, "MaPLe_ATP", "unused", "MODEL.BACKBONE.NAME", name)) == 0
    finished_record(out, open_clip_path, "train", name=name)
    assert tiny_tag[0].downloads == []


# ---- what the trainers check of the checkpoint ------------------------------------------------------------------


def test_the_checkpoints_resolution_is_required(tmp_path, data_root, open_clip_resnet_path, capsys):
    out = tmp_path / "run"
    assert train.main(args(data_root, out, "CoOp", open_clip_resnet_path)) == 2  # INPUT.SIZE (32, 32)
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: INPUT.SIZE is (32, 32) but ") and "\n" not in error
    assert error.endswith('takes 64x64 images: set INPUT.SIZE "(64, 64)"')
    assert read_record(str(out)) is None


def test_other_preprocessing_than_the_checkpoints_is_pointed_out(tmp_path, data_root):
    config = CONFIGS["vit_gelu"]
    preprocess = {**PREPROCESS, "interpolation": "bilinear", "resize_mode": "squash"}
    path = save_checkpoint(make_open_clip(config), config, tmp_path / "clip", preprocess)
    out = tmp_path / "zs"
    openai = ["INPUT.PIXEL_MEAN", "[0.48145466, 0.4578275, 0.40821073]"]  # and INPUT.INTERPOLATION bicubic
    assert train.main(args(data_root, out, "ZeroshotCLIP", path, *openai, extra=["--eval-only"])) == 0
    log = (out / "log.txt").read_text()
    assert f"was trained with {MEAN} / {STD}: set INPUT.PIXEL_MEAN \"{MEAN}\" INPUT.PIXEL_STD \"{STD}\"" in log
    assert "Warning: INPUT.INTERPOLATION is bicubic, but" in log and "set INPUT.INTERPOLATION bilinear" in log
    assert "(resize_mode squash)" in log


def test_an_unsupported_architecture_is_refused_in_one_line(tmp_path, data_root, capsys):
    config = {**CONFIGS["vit_gelu"], "vision_cfg": {**CONFIGS["vit_gelu"]["vision_cfg"], "ls_init_value": 0.1}}
    path = save_checkpoint(make_open_clip(config), config, tmp_path / "clip")
    assert train.main(args(data_root, tmp_path / "run", "CoOp", path)) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: MODEL.BACKBONE.NAME {path}: open_clip model {path!r} cannot run on this CLIP: ")
    assert "vision_cfg.ls_init_value is 0.1" in error and "Supported: " in error and "\n" not in error
