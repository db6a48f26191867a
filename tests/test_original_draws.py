"""The same seed draws the original's random values: every trainer's parameters after it is built, and the random
state it leaves for what follows (data order, augmentation), equal a reference that makes the original's draws in
the original's order (its trainers: coop_atp, cocoop_atp, maple_atp, dept_atp, kgcoop_atp, promptsrc(_atp), and the
authors' independentVL)."""

import pytest
import torch
import torch.nn as nn
from fake_data import build_from, run_args
from torch.nn.modules.module import register_module_module_registration_hook

from clip.model import CLIP, ResidualAttentionBlock, VisionTransformer, infer_config
from dassl.utils import set_random_seed
from trainers import backbone
from trainers.original import replay_prompted_construction

SEED = 3
WIDTH, EMBED = 64, 32  # the tiny CLIP's text width and joint embedding
CONFIGS = {"CoOp": "CoOp/vit_b16.yaml", "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1.yaml",
           "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "DePT": "DePT/vit_b16_ep10_bs4_lr35.yaml",
           "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv4.yaml", "IVLP": "IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
           "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"}
# The original's attribute block sizes N_ATT1..3, different so that a block drawn in the wrong place shows.
N_ATT = (3, 2, 1)
OPTS = ["TRAINER.COOP.N_CTX", "2", "TRAINER.COCOOP.N_CTX", "2", "TRAINER.MAPLE.N_CTX", "2",
        "TRAINER.MAPLE.PROMPT_DEPTH", "2", "TRAINER.COCOOP.CTX_INIT", "", "TRAINER.MAPLE.CTX_INIT", "",
        "TRAINER.COOP.CTX_INIT", "", "DATASET.SUBSAMPLE_CLASSES", "base",
        *[x for node in ("IVLP", "PROMPTSRC") for x in (
            f"TRAINER.{node}.N_CTX_TEXT", "2", f"TRAINER.{node}.N_CTX_VISION", "3", f"TRAINER.{node}.CTX_INIT", "",
            f"TRAINER.{node}.PROMPT_DEPTH_TEXT", "2", f"TRAINER.{node}.PROMPT_DEPTH_VISION", "2")],
        *[x for k, n in enumerate(N_ATT, 1) for x in (f"TRAINER.ATPROMPT.N_ATT{k}", str(n))]]


def normal(*shape, std):
    return nn.init.normal_(torch.empty(*shape), std=std)


def linear(n_in, n_out):
    layer = nn.Linear(n_in, n_out)
    return [layer.weight.detach(), layer.bias.detach()]


def prompted_clip(clip_path, vision: tuple[int, int], text: tuple[int, int]) -> tuple[list, list]:
    """Building CLIP as the original IVLP and PromptSRC did, with their prompts drawn inside: the vision input prompt
    right after conv1, each deep prompt right after its block (blocks 1..J-1 of either tower, vision first). Seen
    through module registration: conv1 is the first module the vision tower registers, ln_2 a block's last."""
    drawn, blocks = {"vision": [], "text": []}, []

    def hook(module, name, submodule):
        if isinstance(module, VisionTransformer) and name == "conv1" and vision[1]:
            drawn["vision"].append(normal(vision[0], WIDTH, std=0.02))
        if isinstance(module, ResidualAttentionBlock) and name == "ln_2":
            blocks.append(module)
            tower, i = ("vision", len(blocks) - 1) if len(blocks) <= 2 else ("text", len(blocks) - 3)
            n, depth = vision if tower == "vision" else text
            if 1 <= i < depth:
                drawn[tower].append(normal(n, WIDTH, std=0.02))

    handle = register_module_module_registration_hook(hook)
    try:
        CLIP(**infer_config(torch.load(clip_path, weights_only=True)))
    finally:
        handle.remove()
    assert len(blocks) == 4  # the tiny CLIP: two blocks per tower
    return drawn["vision"], drawn["text"]


def reference(method: str, k: int, clip_path, n_cls: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The original's draws, in its order: building CLIP (IVLP's and PromptSRC's with their prompts inside), the
    context, the method's own parts, all three attribute blocks (whatever K), then what the method builds after its
    prompt learner; and the random state after."""
    set_random_seed(SEED)
    drawn = {}
    if method in ("IVLP", "PromptSRC"):
        vision, text = prompted_clip(clip_path, (3, 2), (2, 2))
        drawn = {"VPT": vision[0], "deep_vision.0": vision[1], "deep_text.0": text[0]}
    else:
        CLIP(**infer_config(torch.load(clip_path, weights_only=True)))  # load_clip_to_cpu builds CLIP first
    drawn["ctx"] = normal(2, WIDTH, std=0.02)
    if method == "CoCoOp":
        drawn["meta_net.linear1.weight"], drawn["meta_net.linear1.bias"] = linear(EMBED, EMBED // 16)
        drawn["meta_net.linear2.weight"], drawn["meta_net.linear2.bias"] = linear(EMBED // 16, WIDTH)
    if method == "MaPLe":
        drawn["proj.weight"], drawn["proj.bias"] = linear(WIDTH, 64)
        drawn["compound_prompts_text.0"] = normal(2, WIDTH, std=0.02)
        weight, bias = linear(WIDTH, 64)
        drawn["compound_prompt_projections.0.weight"], drawn["compound_prompt_projections.0.bias"] = weight, bias
    if k:
        blocks = [normal(n, WIDTH, std=0.01) for n in N_ATT]
        drawn.update({f"ctx_att{i + 1}": blocks[i] for i in range(k)})
    if method == "DePT":
        drawn["linear_probe_proj.weight"], drawn["linear_probe_proj.bias"] = linear(EMBED, n_cls)
    if method == "KgCoOp":
        CLIP(**infer_config(torch.load(clip_path, weights_only=True)))  # its second CLIP, for the templates
    if method == "PromptSRC":  # its two frozen copies
        for _ in range(2):
            CLIP(**infer_config(torch.load(clip_path, weights_only=True)))
    return drawn, torch.get_rng_state()


def test_the_replayed_construction_draws_as_building_clip_does(tiny_vit_path):
    """trainers/original.py's replay of the original's prompted CLIP: without prompts, CLIP's own draws; with them,
    the prompts the original drew inside it."""
    clip_model = CLIP(**infer_config(torch.load(tiny_vit_path, weights_only=True)))
    set_random_seed(SEED)
    CLIP(**infer_config(clip_model.state_dict()))
    plain = torch.get_rng_state()
    set_random_seed(SEED)
    assert replay_prompted_construction(clip_model, (3, 0), (2, 0)) == ([], [])
    assert torch.equal(torch.get_rng_state(), plain)
    set_random_seed(SEED)
    vision, text = replay_prompted_construction(clip_model, (3, 2), (2, 2))
    state = torch.get_rng_state()
    set_random_seed(SEED)
    expected_vision, expected_text = prompted_clip(tiny_vit_path, (3, 2), (2, 2))
    assert all(torch.equal(a, b) for a, b in zip(vision + text, expected_vision + expected_text))
    assert len(vision) == 2 and len(text) == 1 and torch.equal(torch.get_rng_state(), state)


def built(data_root, tmp_path, method: str, k: int, clip_path, *opts):
    trainer = f"{method}_ATP" if k else method
    attributes = ["TRAINER.ATPROMPT.ATTRIBUTES", repr(["color", "shape", "size"][:k])] if k else []
    set_random_seed(SEED)
    model = build_from(run_args(data_root, tmp_path, trainer, clip_path, CONFIGS[method], *OPTS, *attributes,
                                *opts)).model
    return model, torch.get_rng_state()


def learned(model) -> dict[str, torch.Tensor]:
    params = {n.removeprefix("prompt_learner."): p.detach() for n, p in model.named_parameters() if p.requires_grad}
    return {n: p for n, p in params.items() if not n.startswith("film_")}  # FiLM starts at 1 and 0: no draw


@pytest.mark.parametrize("method", list(CONFIGS))
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_parameters_and_random_state_after_build_are_the_originals(tmp_path, data_root, tiny_vit_path, method, k):
    model, state = built(data_root, tmp_path, method, k, tiny_vit_path)
    params = learned(model)
    expected, expected_state = reference(method, k, tiny_vit_path, n_cls=3)
    assert sorted(params) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(params[name].float(), value), name
    assert torch.equal(state, expected_state)


def test_draws_of_nothing_can_be_skipped(tmp_path, data_root, tiny_vit_path):
    """TRAINER.ORIGINAL_DRAWS False skips the unused blocks: the same values for what is used, another state."""
    faithful, faithful_state = built(data_root, tmp_path / "a", "CoOp", 1, tiny_vit_path)
    lean, lean_state = built(data_root, tmp_path / "b", "CoOp", 1, tiny_vit_path, "TRAINER.ORIGINAL_DRAWS", "False")
    for name, value in learned(faithful).items():
        assert torch.equal(learned(lean)[name], value), name
    assert not torch.equal(faithful_state, lean_state)


def test_an_atp_name_with_atprompt_off_is_the_vanilla_method(tmp_path, data_root, tiny_vit_path, capsys):
    """The original README's way to run vanilla CoOp: --trainer CoOp_ATP TRAINER.ATPROMPT.USE_ATPROMPT False."""
    args = run_args(data_root, tmp_path, "CoOp_ATP", tiny_vit_path, CONFIGS["CoOp"], *OPTS,
                    "TRAINER.ATPROMPT.USE_ATPROMPT", "False")
    model = build_from(args).model
    assert sorted(learned(model)) == ["ctx"]
    assert "CoOp_ATP runs without ATPrompt, as the original did" in capsys.readouterr().out


# ----- AnchorOPT ----------------------------------------------------------------------------------------------
def anchoropt_reference(method: str, clip_path, n_cls: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The original's AnchorOPT variants' draws: CLIP (MaPLe's trainer builds its unprompted copy next), the anchor
    learner's placeholder anchor (CoOp's and DePT's then build a CLIP of their own), the context, the method's parts
    with the position logits where each drew them, and what follows the prompt learner."""
    def clip_model():
        CLIP(**infer_config(torch.load(clip_path, weights_only=True)))

    set_random_seed(SEED)
    clip_model()
    if method == "MaPLe":
        clip_model()
    normal(1, WIDTH, std=0.02)
    if method in ("CoOp", "DePT"):
        clip_model()
    drawn = {"ctx": normal(2, WIDTH, std=0.02)}
    if method == "MaPLe":
        drawn["proj.weight"], drawn["proj.bias"] = linear(WIDTH, 64)
    drawn["ctx_pos_params"] = torch.randn(3, 3)
    if method == "CoCoOp":
        drawn["meta_net.linear1.weight"], drawn["meta_net.linear1.bias"] = linear(EMBED, EMBED // 16)
        drawn["meta_net.linear2.weight"], drawn["meta_net.linear2.bias"] = linear(EMBED // 16, WIDTH)
    if method == "MaPLe":
        drawn["compound_prompts_text.0"] = normal(2, WIDTH, std=0.02)
        weight, bias = linear(WIDTH, 64)
        drawn["compound_prompt_projections.0.weight"], drawn["compound_prompt_projections.0.bias"] = weight, bias
    if method == "DePT":
        drawn["linear_probe_proj.weight"], drawn["linear_probe_proj.bias"] = linear(EMBED, n_cls)
    return drawn, torch.get_rng_state()


@pytest.mark.parametrize("method", ["CoOp", "CoCoOp", "MaPLe", "DePT"])
def test_anchoropt_parameters_and_random_state_after_build_are_the_originals(tmp_path, data_root, tiny_vit_path,
                                                                             method):
    anchor = tmp_path / "anchor.pth.tar"
    torch.save({"state_dict": {"anchor_ctx_1": torch.zeros(1, WIDTH)}}, anchor)
    set_random_seed(SEED)
    model = build_from(run_args(data_root, tmp_path, f"{method}_AnchorOPT", tiny_vit_path, CONFIGS[method], *OPTS,
                                "TRAINER.ANCHOROPT.N_CTX", "2", "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(anchor),
                                "TRAINER.ANCHOROPT.COCOOP_LEARN_POSITIONS", "True")).model
    state = torch.get_rng_state()
    expected, expected_state = anchoropt_reference(method, tiny_vit_path, n_cls=3)
    params = learned(model)
    assert sorted(params) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(params[name].float(), value), name
    assert torch.equal(state, expected_state)


def test_a_backbone_read_once_per_process_leaves_the_draws_of_a_fresh_read(tmp_path, data_root, tiny_vit_path):
    """A process that runs several jobs reads CLIP once; building it draws random numbers, which later jobs of the
    same seed must draw too (else their prompts and data order change), and other seeds draw their own."""
    def build(seed: int):
        set_random_seed(seed)
        model = build_from(run_args(data_root, tmp_path, "CoOp_ATP", tiny_vit_path, CONFIGS["CoOp"], *OPTS)).model
        return learned(model), torch.get_rng_state()

    first, again, other = build(SEED), build(SEED), build(SEED + 1)
    assert torch.equal(first[1], again[1]) and not torch.equal(first[1], other[1])
    for name, value in first[0].items():
        assert torch.equal(value, again[0][name]), name
    backbone._LOADED.clear()  # a fresh read of the other seed draws the same
    fresh = build(SEED + 1)
    assert torch.equal(fresh[1], other[1]) and all(torch.equal(v, fresh[0][n]) for n, v in other[0].items())
