"""DePT / DePT+ATPrompt on a tiny Caltech101 and a tiny CLIP: the loss, test-time fusion, checkpoints."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fake_data import (
    CLASSES,
    assert_bf16_like_fp32,
    assert_round_trip,
    build_from,
    images,
    perturb,
    run_args,
    save_original_checkpoint,
)
from tiny_clip import make_tiny_clip

import train
from clip.model import convert_weights
from dassl.utils.errors import UserError
from trainers.base import training_step
from trainers.dept import DePTCLIP
from trainers.prompting import PromptLearner

REPO = Path(__file__).resolve().parents[1]
OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
    "DATALOADER.TEST.BATCH_SIZE", "8",
    "OPTIM.MAX_EPOCH", "1",
    "TRAINER.COOP.N_CTX", "2",
    "TRAINER.ATPROMPT.N_ATT1", "2",
    "TRAINER.ATPROMPT.N_ATT2", "2",
    "TRAINER.LINEAR_PROBE.WEIGHT", "0.6",
]  # fmt: skip
TRAINERS = ["DePT_ATP", "DePT"]
W = 0.6


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    return run_args(data_root, out, trainer, clip_path, "DePT/vit_b16_ep10_bs4_lr35.yaml", *OPTS, *opts, extra=extra)


def build(data_root, out, trainer, clip_path, *opts, subsample="base"):
    return build_from(args(data_root, out, trainer, clip_path, "DATASET.SUBSAMPLE_CLASSES", subsample, *opts))


def raw_features(model, image):
    return model.text_encoder(model.prompt_learner(), model.prompt_learner.eot), model.image_encoder(image)


def similarity(model, image):
    text, feats = raw_features(model, image)
    return model.logit_scale.exp() * F.normalize(feats, dim=-1) @ F.normalize(text, dim=-1).t()


def direct(model, image, labels=None):
    """DePT's computation written out: raw features, similarity logits, FiLM, the head (REFERENCE §4.5)."""
    text, feats = raw_features(model, image)
    sim = similarity(model, image)
    film_text = text * model.film_lp_text.scale + model.film_lp_text.bias
    film_img = feats * model.film_lp_img.scale + model.film_lp_img.bias
    head = model.linear_probe_proj
    if labels is None:
        return sim, film_img @ head.weight.t() + head.bias
    head_logits = torch.cat([film_text[labels], film_img]) @ head.weight.t() + head.bias
    loss = (1 - W) * F.cross_entropy(sim, labels) + W * F.cross_entropy(head_logits, torch.cat([labels, labels]))
    return sim, loss


@pytest.mark.parametrize("trainer", TRAINERS)
def test_base_to_new(tmp_path, data_root, tiny_vit_path, trainer):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    assert train.main(args(data_root, train_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
    checkpoint = torch.load(train_dir / "PromptLearner" / "model.pth.tar-1", weights_only=False)
    keys = set(checkpoint["state_dict"])
    assert {"prompt_learner.ctx", "film_lp_img.scale", "film_lp_text.bias", "linear_probe_proj.weight",
            "linear_probe_proj.bias"} <= keys
    assert not any(k.startswith(("image_encoder.", "text_encoder.", "logit_scale")) for k in keys)  # CLIP's own
    assert ("prompt_learner.ctx_att2" in keys) == (trainer == "DePT_ATP")
    log = (train_dir / "log.txt").read_text()
    assert "Finish training" in log and "* accuracy:" in log

    eval_args = ["--eval-only", "--model-dir", str(train_dir)]  # no --load-epoch: the latest checkpoint
    assert train.main(args(data_root, eval_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                           extra=eval_args)) == 0
    log = (eval_dir / "log.txt").read_text()
    assert "* accuracy:" in log and "* macro_f1:" in log and "model.pth.tar-1" in log
    assert sorted(p.name for p in eval_dir.iterdir()) == [".run.lock", "log.txt", "results.json"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_loss_is_the_weighted_sum_of_both_losses(tmp_path, data_root, tiny_vit_path, trainer):
    model = build(data_root, tmp_path, trainer, tiny_vit_path).model.train()
    perturb(model)
    image, labels = images(4), torch.tensor([0, 2, 1, 2])
    loss, logits = training_step(model, image, labels, "fp32", torch.device("cpu"))
    expected_logits, expected_loss = direct(model, image, labels)
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(loss, expected_loss)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_test_time_fusion(tmp_path, data_root, tiny_vit_path, trainer):
    image = images(3)
    fused = build(data_root, tmp_path / "a", trainer, tiny_vit_path)
    perturb(fused.model)
    with torch.no_grad():
        sim, head = direct(fused.model, image)
        torch.testing.assert_close(fused.model_inference(image), (1 - W) * sim + W * head)

    no_fusion = ("TRAINER.LINEAR_PROBE.TEST_TIME_FUSION", "False")
    head_only = build(data_root, tmp_path / "b", trainer, tiny_vit_path, *no_fusion)
    head_only.model.load_state_dict(fused.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(head_only.model_inference(image), head)

    new = build(data_root, tmp_path / "c", trainer, tiny_vit_path, subsample="new")
    assert isinstance(new.model.linear_probe_proj, torch.nn.Identity)
    perturb(new.model)
    assert (new.model.film_lp_img.scale - 1).abs().max() > 0.01
    with torch.no_grad():  # new classes: the similarity logits alone, whatever FiLM does
        torch.testing.assert_close(new.model_inference(image), similarity(new.model, image))


def test_evaluation_encodes_the_text_once(tmp_path, data_root, tiny_vit_path):
    model = build(data_root, tmp_path, "DePT_ATP", tiny_vit_path).model.eval()
    calls = []
    model.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        first, second = model(images(2)), model(images(2))
    assert len(calls) == 1 and torch.equal(first, second)
    with torch.no_grad():
        model.prompt_learner.ctx.add_(0.1)  # a changed prompt invalidates the cache
        model(images(2))
    assert len(calls) == 2


def test_training_on_new_classes_is_refused(tmp_path, data_root, tiny_vit_path):
    trainer = build(data_root, tmp_path, "DePT_ATP", tiny_vit_path, subsample="new")
    with pytest.raises(UserError, match="SUBSAMPLE_CLASSES is 'new': set DATASET.SUBSAMPLE_CLASSES base"):
        trainer.train()


def test_all_class_training_learns_a_head_over_all_classes(tmp_path, data_root, tiny_vit_path):
    """The few-shot protocol trains on all classes of any dataset (not only ImageNet's)."""
    model = build(data_root, tmp_path, "DePT", tiny_vit_path, subsample="all").model
    assert model.base_mode and model.linear_probe_proj.out_features == len(CLASSES)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_only_prompt_film_and_head_learn(tmp_path, data_root, tiny_vit_path, trainer):
    t = build(data_root, tmp_path, trainer, tiny_vit_path)
    expected = {"prompt_learner.ctx", "film_lp_img.scale", "film_lp_img.bias", "film_lp_text.scale",
                "film_lp_text.bias", "linear_probe_proj.weight", "linear_probe_proj.bias"}
    expected |= {"prompt_learner.ctx_att1", "prompt_learner.ctx_att2"} if trainer == "DePT_ATP" else set()
    trainable = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trainable == expected
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.batch_idx, t.num_batches = 0, 2
    summary = t.forward_backward(next(iter(t.train_loader_x)))
    assert set(summary) == {"loss", "acc"}
    for name, param in t.model.named_parameters():
        if name in trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
            assert not torch.equal(param, before[name]), name
        else:
            assert param.grad is None and torch.equal(param, before[name]), name


@pytest.mark.parametrize("trainer", TRAINERS)
def test_checkpoint_round_trip(tmp_path, data_root, tiny_vit_path, trainer):
    assert_round_trip(build(data_root, tmp_path / "a", trainer, tiny_vit_path),
                      build(data_root, tmp_path / "b", trainer, tiny_vit_path), tmp_path / "ckpt")


def original_checkpoint(model, folder: Path, epoch: int, head_rows=None) -> dict:
    """A state dict in the original's format (no layout record, all three attribute blocks, fixed-token buffers)."""
    generator = torch.Generator().manual_seed(7)
    state = {}
    for key, value in model.state_dict().items():
        if key == "prompt_learner._extra_state":
            continue
        if key.startswith(("prompt_learner.", "film_lp_", "linear_probe_proj.")):
            value = value + 0.1 * torch.randn(value.shape, generator=generator)
        state[key] = value.clone()
    if head_rows is not None:
        for key in ("linear_probe_proj.weight", "linear_probe_proj.bias"):
            state[key] = torch.randn(head_rows, *state[key].shape[1:], generator=generator)
    width = state["prompt_learner.ctx"].shape[-1]
    state["prompt_learner.ctx_att3"] = torch.zeros(2, width)
    for name in ("token_prefix", "token_middle1", "token_middle2", "token_suffix"):
        state[f"prompt_learner.{name}"] = torch.zeros(3, 1, width)
    save_original_checkpoint(state, folder, epoch)
    return state


def test_original_checkpoint_loads_and_evaluates_the_same(tmp_path, data_root, tiny_vit_path):
    ours = build(data_root, tmp_path / "a", "DePT_ATP", tiny_vit_path)
    state = original_checkpoint(ours.model, tmp_path / "original" / "PromptLearner", 10)
    ours.load_model(str(tmp_path / "original"), epoch=10)
    for name, param in ours.model.named_parameters():
        assert torch.equal(param, state[name]), name
    image = images(3)
    with torch.no_grad():
        sim, head = direct(ours.model, image)
        torch.testing.assert_close(ours.model_inference(image), (1 - W) * sim + W * head)


def test_imagenet_head_keeps_the_rows_of_the_target_classes(tmp_path, data_root, tiny_vit_path):
    """ImageNet-A/R: a 1000-class head evaluated on 200 classes keeps the rows their readers point at."""
    trainer = build(data_root, tmp_path / "a", "DePT_ATP", tiny_vit_path)
    state = original_checkpoint(trainer.model, tmp_path / "ckpt" / "PromptLearner", 5, head_rows=10)
    trainer.dm.dataset.imagenet_indices = [7, 2, 9]  # the target's 3 classes sit at these rows of the full head
    trainer.load_model(str(tmp_path / "ckpt"))
    rows = torch.tensor([7, 2, 9])
    assert torch.equal(trainer.model.linear_probe_proj.weight, state["linear_probe_proj.weight"][rows])
    assert torch.equal(trainer.model.linear_probe_proj.bias, state["linear_probe_proj.bias"][rows])

    plain = build(data_root, tmp_path / "b", "DePT_ATP", tiny_vit_path)  # a reader without imagenet_indices
    with pytest.raises(UserError, match=r"'linear_probe_proj.weight' has shape \[10, 32\] in the checkpoint"):
        plain.load_model(str(tmp_path / "ckpt"))


def test_bf16_forward(tmp_path, data_root, tiny_vit_path):
    fp32 = build(data_root, tmp_path / "a", "DePT_ATP", tiny_vit_path)
    bf16 = build(data_root, tmp_path / "b", "DePT_ATP", tiny_vit_path, "TRAINER.COOP.PREC", "bf16")
    assert bf16.prec == "bf16" and bf16.model.linear_probe_proj.weight.dtype == torch.float32
    image = assert_bf16_like_fp32(fp32, bf16)
    bf16.model.train()
    loss, _ = training_step(bf16.model, image, torch.tensor([0, 1]), "bf16", torch.device("cpu"))
    assert torch.isfinite(loss)


def test_fp16_head_in_half_film_in_fp32():
    clip_model = make_tiny_clip()
    convert_weights(clip_model)
    model = DePTCLIP(clip_model, PromptLearner(clip_model, ["dog", "sea_lion"], 2), base_mode=True)
    assert model.linear_probe_proj.weight.dtype == torch.float16 and model.film_lp_img.scale.dtype == torch.float32
    loss, _ = training_step(model.train(), images(2), torch.tensor([0, 1]), "fp16", torch.device("cpu"))
    loss.backward()
    assert torch.isfinite(loss) and model.film_lp_text.scale.grad.dtype == torch.float32
    with torch.no_grad():
        assert model.eval()(images(2)).dtype == torch.float16
