"""CoCoOp / CoCoOp+ATPrompt on a tiny Caltech101 and a tiny CLIP: training, the batched forward, checkpoints."""

from pathlib import Path

import pytest
import torch
from fake_data import (
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
import trainers.cocoop as cocoop
from clip.model import convert_weights

REPO = Path(__file__).resolve().parents[1]
OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
    "DATALOADER.TEST.BATCH_SIZE", "8",
    "OPTIM.MAX_EPOCH", "1",
    "TRAINER.COCOOP.N_CTX", "2",
    "TRAINER.ATPROMPT.N_ATT1", "2",
    "TRAINER.ATPROMPT.N_ATT2", "2",
]  # fmt: skip
TRAINERS = ["CoCoOp_ATP", "CoCoOp"]


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    config = "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
    return run_args(data_root, out, trainer, clip_path, config, *OPTS, *opts, extra=extra)


def build(data_root, out, trainer, clip_path, *opts):
    return build_from(args(data_root, out, trainer, clip_path, *opts))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_base_to_new(tmp_path, data_root, tiny_vit_path, trainer):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    assert train.main(args(data_root, train_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
    checkpoint = torch.load(train_dir / "prompt_learner" / "model.pth.tar-1", weights_only=False)
    assert {"ctx", "meta_net.linear1.weight", "meta_net.linear2.bias"} <= set(checkpoint["state_dict"])
    log = (train_dir / "log.txt").read_text()
    assert "Finish training" in log and "* accuracy:" in log
    if trainer == "CoCoOp_ATP":  # CTX_INIT is ignored: N_CTX random tokens
        assert "ATPrompt attributes: shape (2 soft tokens), size (2 soft tokens)" in log
        assert checkpoint["state_dict"]["ctx"].shape[0] == 2
    else:  # word initialisation from "a photo of a" decides the length
        assert "sets 4 context tokens; N_CTX (2) is ignored" in log
        assert checkpoint["state_dict"]["ctx"].shape[0] == 4

    eval_args = ["--eval-only", "--model-dir", str(train_dir), "--load-epoch", "1"]
    assert train.main(args(data_root, eval_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                           extra=eval_args)) == 0
    log = (eval_dir / "log.txt").read_text()
    assert "* accuracy:" in log and "* macro_f1:" in log and "model.pth.tar-1" in log


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("images_per_call", [None, 2])
def test_batched_forward_equals_per_image_loop(tmp_path, data_root, tiny_vit_path, trainer, images_per_call,
                                               monkeypatch):
    model = build(data_root, tmp_path, trainer, tiny_vit_path).model
    perturb(model)
    if images_per_call:  # chunks of 2, 2 and 1 images
        tokens = model.prompt_learner.n_cls * model.prompt_learner.token_embeds.shape[-2]
        monkeypatch.setattr(cocoop, "TOKENS_PER_CALL", images_per_call * tokens)
        assert model.images_per_call() == images_per_call
    else:
        assert model.images_per_call() >= 5
    image = images(5)
    weights = torch.randn(5, model.prompt_learner.n_cls, generator=torch.Generator().manual_seed(3))
    results = []
    for loop in (False, True):
        model.zero_grad(set_to_none=True)
        logits = model.use_plain_computation(loop)(image)
        (logits * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((logits.detach(), grads))
    (batched, batched_grads), (looped, looped_grads) = results
    assert batched.shape == (5, model.prompt_learner.n_cls)
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-5)
    assert batched_grads.keys() == looped_grads.keys() and len(batched_grads) >= 5
    for name in batched_grads:
        torch.testing.assert_close(batched_grads[name], looped_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_attribute_blocks_are_not_shifted(tmp_path, data_root, tiny_vit_path):
    model = build(data_root, tmp_path, "CoCoOp_ATP", tiny_vit_path).model
    perturb(model)
    learner = model.prompt_learner
    with torch.no_grad():
        features = torch.nn.functional.normalize(model.image_encoder(images(3)), dim=-1)
        ctx = learner.shifted_ctx(features)
        prompts = learner(ctx.unsqueeze(1))  # [3, n_cls, L, D]
    shift = learner.meta_net(features)
    assert prompts.shape[:2] == (3, learner.n_cls)
    assert (shift[0] - shift[1]).abs().max() > 1e-4  # the images do get different contexts
    for block in ("ctx_att1", "ctx_att2"):
        pos = learner.layout.block_positions(block)[0]
        expected = getattr(learner, block).detach().expand(3, learner.n_cls, -1, -1)
        assert torch.equal(prompts[:, :, pos], expected)
    pos = learner.layout.block_positions("ctx")[0]
    expected = (learner.ctx + shift[:, None, :]).detach()
    torch.testing.assert_close(prompts[:, :, pos], expected[:, None].expand(-1, learner.n_cls, -1, -1))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_only_the_prompt_learner_learns(tmp_path, data_root, tiny_vit_path, trainer):
    t = build(data_root, tmp_path, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    expected = {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
                "meta_net.linear2.bias"} | ({"ctx_att1", "ctx_att2"} if trainer == "CoCoOp_ATP" else set())
    trainable = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trainable == {f"prompt_learner.{n}" for n in expected}
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.batch_idx, t.num_batches = 0, 2
    summary = t.forward_backward(next(iter(t.train_loader_x)))
    assert set(summary) == {"loss", "acc"} and torch.isfinite(torch.tensor(summary["loss"]))
    for name, param in t.model.named_parameters():
        if name in trainable:  # the tiny meta-net's 2 hidden units may both be off: its weights may get zero grads
            assert param.grad is not None, name
            if "linear1" not in name and "linear2.weight" not in name:
                assert param.grad.abs().sum() > 0 and not torch.equal(param, before[name]), name
        else:
            assert param.grad is None and torch.equal(param, before[name]), name


@pytest.mark.parametrize("trainer", TRAINERS)
def test_checkpoint_round_trip(tmp_path, data_root, tiny_vit_path, trainer):
    assert_round_trip(build(data_root, tmp_path / "a", trainer, tiny_vit_path),
                      build(data_root, tmp_path / "b", trainer, tiny_vit_path), tmp_path / "ckpt")


def test_original_checkpoint_loads(tmp_path, data_root, tiny_vit_path):
    """The original's CoCoOp_ATP format: all three attribute blocks and the fixed-token buffers."""
    ours = build(data_root, tmp_path / "a", "CoCoOp_ATP", tiny_vit_path)
    generator = torch.Generator().manual_seed(5)
    original = {k: torch.randn(v.shape, generator=generator) for k, v in ours.model.prompt_learner.state_dict().items()
                if k != "_extra_state"}
    assert set(original) == {"ctx", "ctx_att1", "ctx_att2", "meta_net.linear1.weight", "meta_net.linear1.bias",
                             "meta_net.linear2.weight", "meta_net.linear2.bias"}
    original["ctx_att3"] = torch.zeros(2, original["ctx"].shape[-1])
    original.update({k: torch.zeros(1) for k in ("token_prefix", "token_middle1", "token_middle2", "token_suffix")})
    save_original_checkpoint(original, tmp_path / "original" / "prompt_learner", 10)
    ours.load_model(str(tmp_path / "original"), epoch=10)

    reference = build(data_root, tmp_path / "b", "CoCoOp_ATP", tiny_vit_path)
    with torch.no_grad():
        for name, param in reference.model.prompt_learner.named_parameters():
            param.copy_(original[name])
    image = images(3)
    with torch.no_grad():
        assert torch.equal(ours.model_inference(image), reference.model_inference(image))


def test_bf16_forward(tmp_path, data_root, tiny_vit_path):
    fp32 = build(data_root, tmp_path / "a", "CoCoOp_ATP", tiny_vit_path)
    bf16 = build(data_root, tmp_path / "b", "CoCoOp_ATP", tiny_vit_path, "TRAINER.COCOOP.PREC", "bf16")
    assert bf16.prec == "bf16" and bf16.model.prompt_learner.ctx.dtype == torch.float32
    assert_bf16_like_fp32(fp32, bf16)


def test_fp16_keeps_clip_and_the_meta_net_in_half():
    clip_model = make_tiny_clip()
    convert_weights(clip_model)
    learner = cocoop.CoCoOpPromptLearner(clip_model, ["dog", "sea_lion"], 2, [("shape", 2)])
    model = cocoop.CoCoOpCLIP(clip_model, learner)
    assert model.prompt_learner.meta_net.linear1.weight.dtype == torch.float16
    assert model.prompt_learner.ctx.dtype == torch.float16
    logits = model(images(2))
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
