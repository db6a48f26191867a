"""MaPLe / MaPLe+ATPrompt: deep prompts at the right positions, reductions, training end to end, checkpoints."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from deep_reference import randomise, reference_text
from fake_data import CLASSES, build_from, run_args, save_original_checkpoint
from tiny_clip import make_tiny_clip

import train
from clip.model import convert_weights
from clip.simple_tokenizer import SimpleTokenizer
from dassl.engine.precision import autocast
from dassl.utils import load_checkpoint
from dassl.utils.errors import UserError
from trainers.maple import MaPLeCLIP, MultiModalPromptLearner
from trainers.prompting import PromptedCLIP

REPO = Path(__file__).resolve().parents[1]
NAMES = ["golden retriever", "car side", "sea lion"]
TRIPLE = ["playfulness", "color", "shape"]  # "playfulness" is two BPE tokens


@pytest.fixture(scope="module")
def clip4():
    """Four layers per tower and a vision width (128) unlike the text width (64)."""
    return make_tiny_clip("vit", transformer_layers=4, vision_layers=4, vision_width=128).requires_grad_(False)


def image_batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------- a plain reference
def reference_image(clip, learner, image, depth):
    visual, n_ctx = clip.visual, learner.ctx.shape[0]
    x = visual.conv1(image).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(len(image), 1, -1), x], dim=1) + visual.positional_embedding
    x = torch.cat([x, learner.proj(learner.ctx).expand(len(image), -1, -1)], dim=1)
    x = visual.ln_pre(x).transpose(0, 1)
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i < depth:
            deep = learner.compound_prompt_projections[i - 1](learner.compound_prompts_text[i - 1])
            x = torch.cat([x[:-n_ctx], deep.unsqueeze(1).expand(-1, len(image), -1)])
        x = block(x)
    return F.normalize(visual.ln_post(x[0]) @ visual.proj, dim=-1)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_deep_prompts_match_a_plain_reference(clip4, k):
    attributes = [(w, n) for w, n in zip(TRIPLE, (3, 1, 2))][:k]  # n_a differs from n_ctx = 2
    model = MaPLeCLIP(clip4, MultiModalPromptLearner(clip4, NAMES, n_ctx=2, depth=3, attributes=attributes))
    randomise(model)
    image = image_batch()
    learner = model.prompt_learner
    with torch.no_grad():
        text = model.text_features()
        reference = reference_text(clip4, learner, NAMES, attributes, learner.compound_prompts_text, 3)
        assert torch.allclose(text, reference, atol=1e-5)
        logits = model(image)
        expected = reference_image(clip4, learner, image, 3) @ text.t() * model.logit_scale.exp()
    assert torch.allclose(logits, expected, atol=1e-4)


def test_deep_prompts_replace_only_the_class_context(clip4):
    learner = MultiModalPromptLearner(clip4, NAMES, n_ctx=2, depth=3, attributes=[("playfulness", 3)])
    x = torch.randn(learner.gather_idx.shape[1], len(NAMES), 64)
    out = learner.text_hook(2, x)
    changed = (out != x).any(dim=-1).any(dim=-1).nonzero().flatten().tolist()
    assert changed == [6, 7]  # SOS, 3 soft tokens, "play", "fulness", then the class context
    assert torch.equal(out[6], learner.compound_prompts_text[1][0].expand(len(NAMES), -1))
    assert torch.equal(learner.text_hook(0, x), x) and torch.equal(learner.text_hook(3, x), x)


# -------------------------------------------------------------------------------------------------- reductions
def test_shallow_maple_is_a_prompted_clip(clip4):
    learner = MultiModalPromptLearner(clip4, NAMES, n_ctx=2, depth=1, attributes=[("playfulness", 2), ("color", 1)])
    randomise(MaPLeCLIP(clip4, learner))
    assert len(learner.compound_prompts_text) == 0 and len(learner.compound_prompt_projections) == 0
    image = image_batch()
    with torch.no_grad():
        maple_logits = MaPLeCLIP(clip4, learner)(image)
        text = PromptedCLIP(clip4, learner).text_features()
        appended = learner.proj(learner.ctx)
        image_features = clip4.encode_image(image, lambda x: torch.cat([x, appended.expand(len(x), -1, -1)], 1))
        image_features = F.normalize(image_features, dim=-1)
    assert torch.allclose(maple_logits, clip4.logit_scale.exp() * image_features @ text.t(), atol=1e-5)


def record(states: dict, positions):
    def hook(i, x):
        states[i] = x[positions].clone()
        return x

    return hook


def test_deep_text_prompts_equal_to_the_shallow_states_change_nothing(clip4):
    """Causal attention makes the class context's hidden states class-independent; feeding them back as deep
    prompts must reproduce the shallow model, which only holds when the right positions are replaced."""
    learner = MultiModalPromptLearner(clip4, NAMES, n_ctx=2, depth=4, attributes=[("playfulness", 3), ("shape", 1)])
    model = MaPLeCLIP(clip4, learner)
    randomise(model)
    states = {}
    with torch.no_grad():
        # SOS, 3 soft tokens, "play", "fulness", 1 soft token, "shape", then the class context at 8 and 9
        shallow = F.normalize(model.text_encoder(learner(), learner.eot, layer_hook=record(states, [8, 9])), dim=-1)
        random_deep = model.text_features()
        for i in (1, 2, 3):
            assert torch.allclose(states[i], states[i][:, :1].expand_as(states[i]), atol=1e-6)
            learner.compound_prompts_text[i - 1].copy_(states[i][:, 0])
        deep = model.text_features()
    assert not torch.allclose(random_deep, shallow, atol=1e-3)
    assert torch.allclose(deep, shallow, atol=1e-5)


def test_visual_deep_prompts_equal_to_the_shallow_states_change_nothing(clip4):
    learner = MultiModalPromptLearner(clip4, NAMES, n_ctx=1, depth=3)
    model = MaPLeCLIP(clip4, learner)
    randomise(model)
    image, states = image_batch(1), {}
    with torch.no_grad():
        insert, _ = learner.vision_prompts()
        shallow = F.normalize(clip4.visual(image, insert, layer_hook=record(states, -1)), dim=-1)
        text = model.text_features()
        random_deep = model(image) / model.logit_scale.exp()
        for i, couple in enumerate(learner.compound_prompt_projections, start=1):
            couple.weight.zero_()
            couple.bias.copy_(states[i][0])
        deep = model(image) / model.logit_scale.exp()
    assert not torch.allclose(random_deep, shallow @ text.t(), atol=1e-3)
    assert torch.allclose(deep, shallow @ text.t(), atol=1e-5)


def test_vanilla_word_initialisation_keeps_the_remaining_words_fixed(clip4):
    learner = MultiModalPromptLearner(clip4, NAMES, n_ctx=2, depth=2, ctx_init="a photo of a")
    tok = SimpleTokenizer()
    assert learner.layout.token_ids[0, 1:6].tolist() == tok.encode("a photo of a golden")
    assert learner.text_slots.positions.tolist() == [[1, 2]] * len(NAMES)
    assert torch.equal(learner.ctx, clip4.token_embedding.weight[tok.encode("a photo")])


def test_unsupported_settings_are_explained(clip4):
    with pytest.raises(UserError, match="ResNet"):
        MultiModalPromptLearner(make_tiny_clip("rn"), NAMES, n_ctx=2, depth=2)
    with pytest.raises(UserError, match="PROMPT_DEPTH is 5; it must be between 1 .* and 4"):
        MultiModalPromptLearner(clip4, NAMES, n_ctx=2, depth=5)
    with pytest.raises(UserError, match="N_CTX is 0"):
        MultiModalPromptLearner(clip4, NAMES, n_ctx=0, depth=2)


def test_bf16_autocast_is_close_to_fp32_and_text_is_encoded_once(clip4):
    model = MaPLeCLIP(clip4, MultiModalPromptLearner(clip4, NAMES, n_ctx=2, depth=3, attributes=[("color", 2)]))
    calls = []
    model.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    image, scale = image_batch(), model.logit_scale.exp()
    learner = model.prompt_learner
    with torch.no_grad():
        fp32 = model(image) / scale
        model(image)
        assert len(calls) == 1  # evaluation reuses the text features
        with autocast("bf16", torch.device("cpu")):
            text = model.text_encoder(learner(), learner.eot, layer_hook=learner.text_hook)
            logits = model(image)
    assert text.dtype == torch.bfloat16
    assert torch.allclose(F.normalize(text.float(), dim=-1), model.text_features(), atol=0.03)
    assert torch.allclose(logits.float() / scale, fp32, atol=0.03)
    with autocast("bf16", torch.device("cpu")):
        model(image).float().sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.prompt_learner.parameters())


def test_fp16_keeps_the_original_dtypes_and_matches_fp32():
    half_clip, clip = make_tiny_clip("vit", vision_width=128), make_tiny_clip("vit", vision_width=128)
    convert_weights(half_clip)
    half = MaPLeCLIP(half_clip, MultiModalPromptLearner(half_clip, NAMES, n_ctx=2, depth=2, attributes=[("color", 3)]))
    full = MaPLeCLIP(clip, MultiModalPromptLearner(clip, NAMES, n_ctx=2, depth=2, attributes=[("color", 3)]))
    dtypes = {name: p.dtype for name, p in half.prompt_learner.named_parameters()}
    assert dtypes["ctx"] == dtypes["proj.weight"] == dtypes["ctx_att1"] == torch.float16
    assert dtypes["compound_prompts_text.0"] == dtypes["compound_prompt_projections.0.weight"] == torch.float32
    full.prompt_learner.load_state_dict(half.prompt_learner.state_dict())
    image = image_batch()
    logits = half(image)
    assert logits.dtype == torch.float16
    with torch.no_grad():
        assert torch.allclose(logits.float(), full(image), atol=0.05)
    logits.float().sum().backward()
    assert all(p.grad is not None for p in half.prompt_learner.parameters())


# ----------------------------------------------------------------------------------------------- the trainer
OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "DATALOADER.TEST.BATCH_SIZE", "8",
    "OPTIM.MAX_EPOCH", "2",
    "TRAINER.MAPLE.N_CTX", "2",
    "TRAINER.MAPLE.PROMPT_DEPTH", "2",
    "TRAINER.ATPROMPT.N_ATT1", "3",
    "TRAINER.ATPROMPT.N_ATT2", "1",
]  # fmt: skip


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    config = "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"
    return run_args(data_root, out, trainer, clip_path, config, *OPTS, *opts, extra=extra)


def build(data_root, out, trainer, clip_path, *opts):
    return build_from(args(data_root, out, trainer, clip_path, *opts))


@pytest.mark.parametrize("trainer", ["MaPLe_ATP", "MaPLe"])
def test_base_to_new(tmp_path, data_root, tiny_vit_path, trainer):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    assert train.main(args(data_root, train_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
    assert (train_dir / "MultiModalPromptLearner" / "model.pth.tar-2").is_file()
    log = (train_dir / "log.txt").read_text()
    assert "Finish training" in log and "* accuracy:" in log
    assert ("ATPrompt attributes: shape (3 soft tokens), size (1 soft token)" in log) == (trainer == "MaPLe_ATP")

    eval_args = ["--eval-only", "--model-dir", str(train_dir), "--load-epoch", "2"]
    assert (
        train.main(
            args(data_root, eval_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new", extra=eval_args)
        )
        == 0
    )
    log = (eval_dir / "log.txt").read_text()
    assert "* accuracy:" in log and "model.pth.tar-2" in log


def test_only_the_prompt_learner_learns(tmp_path, data_root, tiny_vit_path):
    trainer = build(data_root, tmp_path, "MaPLe_ATP", tiny_vit_path)
    names = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in trainer.model.named_parameters() if n.startswith("prompt_learner.")}
    assert {
        "prompt_learner.proj.weight",
        "prompt_learner.compound_prompts_text.0",
        "prompt_learner.ctx_att2",
        "prompt_learner.compound_prompt_projections.0.bias",
    } <= names
    optimised = {id(p) for group in trainer.optim.param_groups for p in group["params"]}
    assert optimised == {id(p) for n, p in trainer.model.named_parameters() if n in names}
    F.cross_entropy(trainer.model(image_batch(4)), torch.tensor([0, 1, 2, 0])).backward()
    for name, param in trainer.model.named_parameters():
        assert (param.grad is not None and param.grad.abs().sum() > 0) == (name in names), name


def original_checkpoint(trainer) -> dict:
    """The state the original MaPLe_ATP saves: fp16 ctx/proj, all three attribute blocks, the token buffers."""
    state = {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.endswith("_extra_state")}
    generator = torch.Generator().manual_seed(3)
    for key in [k for k in state if k.startswith("prompt_learner.")]:
        state[key] = state[key] + 0.1 * torch.randn(state[key].shape, generator=generator)
    for key in ("prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias"):
        state[key] = state[key].half()
    state["prompt_learner.ctx_att3"] = torch.zeros(3, state["prompt_learner.ctx"].shape[-1])
    for buffer in ("token_prefix", "token_middle1", "token_middle2", "token_middle3", "token_suffix"):
        state[f"prompt_learner.{buffer}"] = torch.zeros(len(CLASSES), 1, 64)
    return state


def test_checkpoints_load_ours_and_the_originals(tmp_path, data_root, tiny_vit_path):
    source = build(data_root, tmp_path / "a", "MaPLe_ATP", tiny_vit_path)
    original = original_checkpoint(source)
    save_original_checkpoint(original, tmp_path / "original" / "MultiModalPromptLearner", 5)
    loaded = build(data_root, tmp_path / "b", "MaPLe_ATP", tiny_vit_path)
    loaded.load_model(str(tmp_path / "original"), epoch=5)
    mine = loaded.model.state_dict()
    for key in ("prompt_learner.ctx", "prompt_learner.compound_prompts_text.0", "prompt_learner.ctx_att1"):
        assert torch.equal(mine[key], original[key].float())

    expected = {k: v.float() for k, v in original.items() if k in mine}
    source.model.load_state_dict(expected, strict=False)
    image = image_batch(3)
    with torch.no_grad():
        assert torch.equal(loaded.model_inference(image), source.model_inference(image))

    loaded.save_model(0, str(tmp_path / "ours"))
    keys = load_checkpoint(str(tmp_path / "ours" / "MultiModalPromptLearner" / "model.pth.tar-1"))["state_dict"]
    assert {"prompt_learner.proj.weight", "prompt_learner.compound_prompt_projections.0.weight"} <= set(keys)
    assert not any(k.startswith(("image_encoder.", "text_encoder.", "logit_scale")) for k in keys)  # CLIP's own
    again = build(data_root, tmp_path / "c", "MaPLe_ATP", tiny_vit_path)
    again.load_model(str(tmp_path / "ours"), epoch=1)
    with torch.no_grad():
        assert torch.equal(again.model_inference(image), loaded.model_inference(image))


def test_a_checkpoint_of_another_depth_is_explained(tmp_path, data_root, tiny_vit_path):
    build(data_root, tmp_path / "a", "MaPLe", tiny_vit_path).save_model(0, str(tmp_path / "ckpt"))
    shallow = build(data_root, tmp_path / "b", "MaPLe", tiny_vit_path, "TRAINER.MAPLE.PROMPT_DEPTH", "1")
    with pytest.raises(UserError, match="prompt_depth: checkpoint 2, model 1"):
        shallow.load_model(str(tmp_path / "ckpt"))


def test_a_run_resumes_from_its_checkpoint_without_clips_weights(tmp_path, data_root, tiny_vit_path):
    """A whole-model checkpoint leaves the frozen CLIP out; resuming takes it from the model built."""
    trainer = build(data_root, tmp_path, "MaPLe_ATP", tiny_vit_path)
    randomise(trainer.model)
    trainer.save_model(0, str(tmp_path))
    resumed = build(data_root, tmp_path, "MaPLe_ATP", tiny_vit_path)
    assert resumed.resume_model_if_exist(str(tmp_path)) == 1
    for name, param in trainer.model.prompt_learner.named_parameters():
        assert torch.equal(resumed.model.prompt_learner.get_parameter(name), param), name
