"""IVLP and PromptSRC (with ATPrompt) on a tiny CLIP and a tiny Caltech101: the prompts at their places in both towers,
PromptSRC's loss against a plain re-computation, GPA against a hand computation and across a resume, every precision,
checkpoints (ours and the original's), end to end. AnchorOPT on both: tests/test_anchoropt_methods.py; their draws:
tests/test_original_draws.py; the feature cache: tests/test_feature_cache.py."""

import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from deep_reference import randomise, reference_text
from fake_data import CLASSES, assert_round_trip, build_from, images, run_args, save_original_checkpoint
from tiny_clip import make_tiny_clip

import clip
import train
from clip.model import convert_weights
from dassl.utils import load_checkpoint, set_random_seed
from dassl.utils.errors import UserError
from datasets.prompt_templates import TEACHER_TEMPLATES
from trainers import run_spec
from trainers.base import training_step
from trainers.gpa import gaussian_weights
from trainers.ivlp import IVLPCLIP, IVLPPromptLearner
from trainers.promptsrc import PromptSRCCLIP

NAMES = ["golden retriever", "car side", "sea lion"]
CPU = torch.device("cpu")
LABELS = torch.tensor([0, 2, 1, 2])


@pytest.fixture(scope="module")
def clip4():
    """Four layers per tower and a vision width (128) unlike the text width (64)."""
    return make_tiny_clip("vit", transformer_layers=4, vision_layers=4, vision_width=128).requires_grad_(False)


def learner(clip_model, attributes=(), text_depth=3, vision_depth=2, **kwargs) -> IVLPPromptLearner:
    return IVLPPromptLearner(clip_model, NAMES, n_ctx=2, n_ctx_vision=3, text_depth=text_depth,
                             vision_depth=vision_depth, attributes=attributes, **kwargs)


# ----- the prompts ------------------------------------------------------------------------------------------
def reference_image(clip_model, prompts, image, depth):
    """Image features by hand: the prompt tokens appended after the patches, the last ones replaced layer by layer."""
    visual, n = clip_model.visual, prompts.VPT.shape[0]
    x = visual.conv1(image).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(len(image), 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(torch.cat([x, prompts.VPT.expand(len(image), -1, -1)], dim=1)).transpose(0, 1)
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i < depth:
            x = torch.cat([x[:-n], prompts.deep_vision[i - 1].unsqueeze(1).expand(-1, len(image), -1)])
        x = block(x)
    return F.normalize(visual.ln_post(x[0]) @ visual.proj, dim=-1)


@pytest.mark.parametrize("attributes", [[], [("playfulness", 3)], [("color", 1), ("playfulness", 2)]])
def test_deep_prompts_in_both_towers_match_a_plain_reference(clip4, attributes):
    """Text depth 3 and vision depth 2 differ; "playfulness" is two BPE tokens; N_ATT differs from N_CTX_TEXT."""
    model = IVLPCLIP(clip4, learner(clip4, attributes))
    randomise(model)
    prompts, image = model.prompt_learner, images(2)
    assert [tuple(p.shape) for p in (prompts.ctx, prompts.VPT, *prompts.deep_text, *prompts.deep_vision)] == \
        [(2, 64), (3, 128), (2, 64), (2, 64), (3, 128)]
    with torch.no_grad():
        text = model.text_features()
        reference = reference_text(clip4, prompts, NAMES, attributes, prompts.deep_text, 3)
        torch.testing.assert_close(text, reference, rtol=1e-5, atol=1e-5)
        expected = model.logit_scale.exp() * reference_image(clip4, prompts, image, 2) @ text.t()
        torch.testing.assert_close(model(image), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:SINGLE_TOKEN_WORDS")
def test_the_originals_single_token_layout_keeps_its_deep_text_positions(clip4):
    """OxfordPets' "playfulness" with SINGLE_TOKEN_WORDS: the original's rows 1 + K (n + 1) onwards, whatever the
    words are; without it, the class context after the real words."""
    attributes = [("playfulness", 2), ("energy", 2)]
    original = learner(clip4, attributes, single_token_words=True)
    assert original.text_slots.positions.tolist() == [[7, 8]] * len(NAMES)  # 1 + 2 x (2 + 1)
    assert learner(clip4, attributes).text_slots.positions.tolist() == [[8, 9]] * len(NAMES)  # play + fulness
    x = torch.randn(original.gather_idx.shape[1], len(NAMES), 64)
    out = original.text_hook(1, x)
    assert (out != x).any(-1).any(-1).nonzero().flatten().tolist() == [7, 8]
    assert torch.equal(original.text_hook(3, x), x)  # past PROMPT_DEPTH_TEXT: untouched


def test_without_vision_prompts_the_image_side_is_clips_own(clip4):
    model = IVLPCLIP(clip4, learner(clip4, vision_depth=0))
    assert not hasattr(model.prompt_learner, "VPT") and len(model.prompt_learner.deep_vision) == 0
    assert model.TEST_LOGITS_FROM_ENCODER and not IVLPCLIP(clip4, learner(clip4)).TEST_LOGITS_FROM_ENCODER
    image = images(2)
    with torch.no_grad():
        torch.testing.assert_close(model.image_features(image), F.normalize(clip4.encode_image(image), dim=-1))


def test_unsupported_settings_are_explained(clip4):
    with pytest.raises(UserError, match="PROMPT_DEPTH_TEXT is 0; it must be between 1 .* and 4"):
        learner(clip4, text_depth=0)
    with pytest.raises(UserError, match="PROMPT_DEPTH_VISION is 5; it must be between 0 .* and 4"):
        learner(clip4, vision_depth=5)
    with pytest.raises(UserError, match="IVLP prompts the vision transformer, but this CLIP has a ResNet"):
        learner(make_tiny_clip("rn"), text_depth=2, vision_depth=0)
    with pytest.raises(UserError, match="TRAINER.PROMPTSRC.N_CTX_VISION is 0"):
        IVLPPromptLearner(clip4, NAMES, 2, 0, 2, 2, node="PROMPTSRC")


# ----- PromptSRC's loss and precisions ------------------------------------------------------------------------
def teacher_by_hand(clip_model, names) -> torch.Tensor:
    """Each class's raw encode_text features averaged over the 60 templates, then normalised."""
    with torch.no_grad():
        raw = torch.stack([clip_model.encode_text(clip.tokenize([t.format(n) for n in names])).float()
                           for t in TEACHER_TEMPLATES])
    return F.normalize(raw.mean(dim=0), dim=-1)


def test_the_loss_equals_a_plain_recomputation_from_one_clip(clip4):
    model = PromptSRCCLIP(clip4, learner(clip4, [("color", 2)]), text_weight=25, image_weight=10)
    randomise(model)
    image = images(4)
    loss, logits = training_step(model, image, LABELS, "fp32", CPU)
    with torch.no_grad():
        text, features = model.text_features(), model.image_features(image)
        teacher = teacher_by_hand(clip4, NAMES)
        frozen = F.normalize(clip4.encode_image(image), dim=-1)
        scale = clip4.logit_scale.exp()
        p_frozen, log_p = F.softmax(scale * frozen @ teacher.t(), dim=1), F.log_softmax(logits, dim=1)
        kl = (p_frozen * (p_frozen.log() - log_p)).sum() / logits.numel()
        expected = (F.cross_entropy(scale * features @ text.t(), LABELS) + kl + 25 * (text - teacher).abs().mean()
                    + 10 * (features - frozen).abs().mean())
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert kl > 1e-4 and (features - frozen).abs().mean() > 1e-3  # the terms count
    encoders = [m for m in model.modules() if type(m).__name__ == "VisionTransformer"]
    assert len(encoders) == 1 and not any("teacher" in k or "ZS" in k for k in model.state_dict())


@pytest.mark.parametrize("prec", ["bf16", "fp16", "amp"])
def test_every_precision_trains_close_to_fp32(prec):
    """fp16: OpenAI's half weights as the original (ctx in half, the vision and deep prompts in fp32); bf16 and amp
    autocast over fp32 weights."""
    full = make_tiny_clip("vit", vision_width=128)
    clip_model = make_tiny_clip("vit", vision_width=128)
    if prec == "fp16":
        convert_weights(clip_model)
    model = PromptSRCCLIP(clip_model, learner(clip_model, [("color", 2)], 2), 25, 10)
    reference = PromptSRCCLIP(full, learner(full, [("color", 2)], 2), 25, 10)
    reference.prompt_learner.load_state_dict(model.prompt_learner.state_dict())
    dtypes = {name: p.dtype for name, p in model.prompt_learner.named_parameters()}
    assert dtypes["ctx"] == dtypes["ctx_att1"] == (torch.float16 if prec == "fp16" else torch.float32)
    assert dtypes["VPT"] == dtypes["deep_text.0"] == dtypes["deep_vision.0"] == torch.float32
    loss, logits = training_step(model, images(4), LABELS, prec, CPU)
    expected, _ = training_step(reference, images(4), LABELS, "fp32", CPU)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(loss.float(), expected, rtol=0.02, atol=0.02)
    loss.backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.prompt_learner.parameters())


# ----- the trainer: GPA, checkpoints, end to end -------------------------------------------------------------
OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
    "OPTIM.MAX_EPOCH", "3",
    "OPTIM.LR", "0.05",
    "TRAINER.ATPROMPT.N_ATT1", "2",
    "TRAINER.ATPROMPT.N_ATT2", "1",
]  # fmt: skip
CFG = "vit_b16_c2_ep20_batch4_4+4ctx.yaml"
CONFIGS = {"PromptSRC": f"PromptSRC/{CFG}", "IVLP": f"IVLP/{CFG}"}


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    method = trainer.split("_")[0]
    node = method.upper()
    shape = [f"TRAINER.{node}.PROMPT_DEPTH_TEXT", "2", f"TRAINER.{node}.PROMPT_DEPTH_VISION", "2",
             f"TRAINER.{node}.N_CTX_TEXT", "2", f"TRAINER.{node}.N_CTX_VISION", "3"]
    gpa = ["TRAINER.PROMPTSRC.GPA_MEAN", "2"] if method == "PromptSRC" else []
    return run_args(data_root, out, trainer, clip_path, CONFIGS[method], *OPTS, *shape, *gpa, *opts, extra=extra)


def build(data_root, out, trainer, clip_path, *opts, subsample="base"):
    set_random_seed(1)  # as train.py: the same data order in every build
    return build_from(args(data_root, out, trainer, clip_path, "DATASET.SUBSAMPLE_CLASSES", subsample, *opts))


def learned(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_gpa_weights_are_the_normalised_gaussian_density():
    weights = gaussian_weights(15, 1, 20)
    density = [math.exp(-((e - 15) ** 2) / 2) for e in range(1, 21)]
    assert weights == pytest.approx([d / sum(density) for d in density], rel=1e-12)
    assert [round(w, 3) for w in weights[12:17]] == [0.054, 0.242, 0.399, 0.242, 0.054]
    assert gaussian_weights(15, 1, 10)[-1] == pytest.approx(0.9959, abs=1e-4)  # the ATPrompt scripts: GPA in name only


@pytest.mark.parametrize("opts, message", [
    (("TRAINER.PROMPTSRC.GPA_STD", "0"), "TRAINER.PROMPTSRC.GPA_STD is 0: the standard deviation"),
    (("TRAINER.PROMPTSRC.GPA_MEAN", "45", "TRAINER.PROMPTSRC.GPA_STD", "1", "OPTIM.MAX_EPOCH", "5"),
     r"GPA_MEAN 45 and GPA_STD 1 give each of the 5 epochs \(OPTIM.MAX_EPOCH\) a weight of 0, so the aggregated "
     "prompts would be NaN"),
])
def test_gpa_settings_that_would_give_no_weights_are_refused(opts, message):
    args = run_spec.build_parser().parse_args(["--trainer", "PromptSRC", *opts])
    with pytest.raises(UserError, match=message):
        run_spec.check_args(args, run_spec.config_and_notes(args)[0])


def test_gpa_averages_the_learned_prompts_of_every_epoch_and_nothing_else(tmp_path, data_root, tiny_vit_path):
    trainer = build(data_root, tmp_path, "PromptSRC_ATP", tiny_vit_path)
    frozen = {k: v.clone() for k, v in trainer.clip_model.state_dict().items()}
    epochs, add = [], trainer.gpa.add
    trainer.gpa.add = lambda epoch: (epochs.append(learned(trainer)), add(epoch))
    trainer.train()
    weights = gaussian_weights(2, 1, 3)
    assert len(epochs) == 3 and set(epochs[0]) == {"prompt_learner.ctx", "prompt_learner.ctx_att1",
                                                   "prompt_learner.ctx_att2", "prompt_learner.VPT",
                                                   "prompt_learner.deep_text.0", "prompt_learner.deep_vision.0"}
    for name, value in learned(trainer).items():
        by_hand = sum(w * epoch[name] for w, epoch in zip(weights, epochs))
        torch.testing.assert_close(value, by_hand, rtol=1e-6, atol=1e-7, msg=name)
        assert not torch.allclose(value, epochs[-1][name])  # not the last epoch's
    assert all(torch.equal(v, frozen[k]) for k, v in trainer.clip_model.state_dict().items())
    saved = load_checkpoint(str(tmp_path / "VLPromptLearner" / "model.pth.tar-3"))["state_dict"]
    assert torch.equal(saved["prompt_learner.ctx"], learned(trainer)["prompt_learner.ctx"])  # the GPA is saved


def test_a_resumed_run_ends_with_the_same_gpa(tmp_path, data_root, tiny_vit_path, capsys):
    uninterrupted = build(data_root, tmp_path / "a", "PromptSRC", tiny_vit_path)
    uninterrupted.train()
    out = tmp_path / "b"
    crashed = build(data_root, out, "PromptSRC", tiny_vit_path)
    forward_backward = crashed.forward_backward

    def crash(batch):
        if crashed.epoch == 2:
            raise RuntimeError("simulated crash")
        return forward_backward(batch)

    crashed.forward_backward = crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.train()
    shutil.copytree(out, tmp_path / "c")
    resumed = build(data_root, out, "PromptSRC", tiny_vit_path)
    capsys.readouterr()
    resumed.train()
    assert "Previous epoch: 2" in capsys.readouterr().out
    for name, value in learned(uninterrupted).items():
        assert torch.equal(learned(resumed)[name], value), name

    # A checkpoint without the aggregate (as the original's) resumes, and the run says what its average lacks.
    path = tmp_path / "c" / "VLPromptLearner" / "model-last.pth.tar"
    checkpoint = load_checkpoint(str(path))
    del checkpoint["resume_state"]["training_state"]
    torch.save(checkpoint, path)
    build(data_root, tmp_path / "c", "PromptSRC", tiny_vit_path).train()
    assert "Note: GPA lacks epochs of weight 0.7259 in all" in capsys.readouterr().out


@pytest.mark.parametrize("trainer", ["PromptSRC", "PromptSRC_ATP", "IVLP"])
def test_checkpoints_round_trip_and_hold_no_clip(tmp_path, data_root, tiny_vit_path, trainer):
    trained, fresh = build(data_root, tmp_path / "a", trainer, tiny_vit_path), build(data_root, tmp_path / "b",
                                                                                        trainer, tiny_vit_path)
    assert_round_trip(trained, fresh, tmp_path / "ckpt")
    keys = load_checkpoint(str(tmp_path / "ckpt" / "VLPromptLearner" / "model.pth.tar-1"))["state_dict"]
    assert {"prompt_learner.ctx", "prompt_learner.VPT", "prompt_learner.deep_text.0"} <= set(keys)
    assert not any(k.startswith(("image_encoder.", "text_encoder.", "logit_scale")) for k in keys)


def original_checkpoint(trainer) -> dict:
    """What the original PromptSRC_ATP saved: the whole model, its prompts inside CLIP's modules, ctx in fp16, all three
    attribute blocks, the token buffers and its second image encoder."""
    renames = {"prompt_learner.VPT": "image_encoder.VPT",
               "prompt_learner.deep_vision.0": "image_encoder.transformer.resblocks.1.VPT_shallow",
               "prompt_learner.deep_text.0": "text_encoder.transformer.resblocks.1.VPT_shallow"}
    state = {renames.get(k, k): v.clone() for k, v in trainer.model.state_dict().items()
             if not k.endswith("_extra_state")}
    generator = torch.Generator().manual_seed(3)
    for key in [*renames.values(), "prompt_learner.ctx", "prompt_learner.ctx_att1", "prompt_learner.ctx_att2"]:
        state[key] = state[key] + 0.1 * torch.randn(state[key].shape, generator=generator)
    state["prompt_learner.ctx"] = state["prompt_learner.ctx"].half()
    state["prompt_learner.ctx_att3"] = torch.zeros(4, 64)
    for buffer in ("token_prefix", "token_middle1", "token_middle2", "token_suffix"):
        state[f"prompt_learner.{buffer}"] = torch.zeros(len(CLASSES), 1, 64)
    visual = trainer.clip_model.visual.state_dict()
    state |= {f"prompt_learner.ZS_image_encoder.{k}": v.half() for k, v in visual.items()}
    return state


def test_the_originals_checkpoints_load(tmp_path, data_root, tiny_vit_path):
    source = build(data_root, tmp_path / "a", "PromptSRC_ATP", tiny_vit_path)
    original = original_checkpoint(source)
    save_original_checkpoint(original, tmp_path / "original" / "VLPromptLearner", 5)
    loaded = build(data_root, tmp_path / "b", "PromptSRC_ATP", tiny_vit_path, subsample="new")
    loaded.load_model(str(tmp_path / "original"), epoch=5)
    mine = loaded.model.state_dict()
    assert torch.equal(mine["prompt_learner.deep_text.0"], original["text_encoder.transformer.resblocks.1.VPT_shallow"])
    assert torch.equal(mine["prompt_learner.VPT"], original["image_encoder.VPT"])
    assert torch.equal(mine["prompt_learner.ctx"], original["prompt_learner.ctx"].float())
    new = build(data_root, tmp_path / "c", "PromptSRC_ATP", tiny_vit_path, subsample="new")
    new.model.prompt_learner.load_state_dict(loaded.model.prompt_learner.state_dict())
    new.set_model_mode("eval")
    loaded.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(loaded.model_inference(images(3)), new.model_inference(images(3)))


@pytest.mark.parametrize("trainer", ["PromptSRC_ATP", "IVLP"])
def test_base_to_new_through_train_py(tmp_path, data_root, tiny_vit_path, trainer):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    assert train.main(args(data_root, train_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                           "OPTIM.MAX_EPOCH", "1")) == 0
    log = (train_dir / "log.txt").read_text()
    assert "Finish training" in log and "* accuracy:" in log
    assert ("Using the GPA of the prompts as the final model" in log) == trainer.startswith("PromptSRC")
    extra = ["--eval-only", "--model-dir", str(train_dir), "--load-epoch", "1"]
    assert train.main(args(data_root, eval_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                           extra=extra)) == 0
    assert "* accuracy:" in (eval_dir / "log.txt").read_text()


def test_the_originals_ivlp_experiment_key_is_accepted_and_noted():
    cfg, notes = run_spec.config_and_notes(run_spec.build_parser().parse_args(
        ["--trainer", "IVLP", "TRAINER.IVLP.IMG_WEIGHT", "0.7"]))
    assert any("TRAINER.IVLP.IMG_WEIGHT is not read" in note for note in notes)
