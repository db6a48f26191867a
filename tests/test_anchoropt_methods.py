"""AnchorOPT on CoCoOp, MaPLe, DePT, KgCoOp, IVLP and PromptSRC (TRAINER.ANCHOROPT.USE_ANCHOROPT on each) on a tiny
CLIP and a tiny Caltech101: the arranged prompts (MaPLe's and IVLP's deep ones too), what learns, each loss against
a plain re-computation, checkpoints, base-to-new through train.py, every precision, and the settings the original
ran with."""

import pytest
import torch
import torch.nn.functional as F
from fake_data import assert_round_trip, build_from, images, perturb, run_args
from test_anchoropt import full_prompt_features
from test_promptsrc import teacher_by_hand

import train
from dassl.engine.records import read_record
from trainers.anchoropt import distillation
from trainers.base import training_step

CPU = torch.device("cpu")
CONFIGS = {"CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
           "DePT": "DePT/vit_b16_ep10_bs4_lr35.yaml", "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv4.yaml",
           "IVLP": "IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
           "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"}
# The original had no KgCoOp, IVLP or PromptSRC variant: the switch alone for KgCoOp, names alike for the others.
TRAINERS = {"CoCoOp": "CoCoOp_AnchorOPT", "MaPLe": "MaPLe_AnchorOPT", "DePT": "DePT_AnchorOPT", "KgCoOp": "KgCoOp",
            "IVLP": "IVLP_AnchorOPT", "PromptSRC": "PromptSRC_AnchorOPT"}
METHODS = list(CONFIGS)
OPTS = [  # on top of fake_data.TINY_RUN
    "TRAINER.ANCHOROPT.USE_ANCHOROPT", "True",
    "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
    "OPTIM.MAX_EPOCH", "1",
    "TRAINER.MAPLE.PROMPT_DEPTH", "2",
    *[f"TRAINER.{node}.{key}" if i % 2 == 0 else key for node in ("IVLP", "PROMPTSRC") for i, key in enumerate(
        ["PROMPT_DEPTH_TEXT", "2", "PROMPT_DEPTH_VISION", "2", "N_CTX_VISION", "3"])],
    "TRAINER.ANCHOROPT.N_CTX", "2",
    "TRAINER.ANCHOROPT.PROMPT_CE_WEIGHT", "2.0",
    "TRAINER.ANCHOROPT.KD_WEIGHT", "3.0",
    "TRAINER.ANCHOROPT.KD_TEMPERATURE", "2.0",
    "TRAINER.LINEAR_PROBE.WEIGHT", "0.6",
]  # fmt: skip
LABELS = torch.tensor([0, 2, 1, 2])


@pytest.fixture(scope="module")
def anchor(original_anchor_path):
    return original_anchor_path


def args(data_root, out, method, clip_path, anchor, *opts, extra=()):
    return run_args(data_root, out, TRAINERS[method], clip_path, CONFIGS[method], *OPTS,
                    "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(anchor), *opts, extra=extra)


def build(data_root, out, method, clip_path, anchor, *opts, subsample="base"):
    return build_from(args(data_root, out, method, clip_path, anchor, "DATASET.SUBSAMPLE_CLASSES", subsample, *opts))


def set_arrangement(learner) -> None:
    """Slots: the anchor, ctx2, ctx1 (3 slots for 2 context tokens and a 1-token anchor)."""
    with torch.no_grad():
        learner.ctx_pos_params.copy_(torch.tensor([[0.0, 0, 5], [0, 5, 0], [5, 0, 0]]))


def anchor_prompt_features(built) -> torch.Tensor:
    """The anchor branch's class features, computed plainly: "X of <class>." with X the anchor."""
    anchor = built.model.prompt_learner.anchor[0]
    names = [n.replace("_", " ") for n in built.dm.dataset.classnames]
    return torch.stack([full_prompt_features(built.clip_model, f"X of {n}.", {1: anchor}) for n in names])


def plain_image_features(built, image) -> torch.Tensor:
    """CLIP's own (unprompted) normalised image features."""
    return F.normalize(built.clip_model.encode_image(image), dim=-1)


# ----- the arranged prompts -----------------------------------------------------------------------------------
def test_cocoop_shifts_the_context_before_the_arrangement(tmp_path, data_root, tiny_vit_path, anchor):
    built = build(data_root, tmp_path, "CoCoOp", tiny_vit_path, anchor)
    model, learner = built.model.eval(), built.model.prompt_learner
    perturb(model)
    set_arrangement(learner)
    image = images(2)
    names = [n.replace("_", " ") for n in built.dm.dataset.classnames]
    with torch.no_grad():
        features = plain_image_features(built, image)
        rows = []
        for f in features:
            shifted = learner.ctx + learner.meta_net(f.unsqueeze(0))  # [2, D]
            slots = [learner.anchor[0], shifted[1], shifted[0]]
            text = torch.stack([full_prompt_features(built.clip_model, f"X X X {n}.", dict(enumerate(slots, 1)))
                                for n in names])
            rows.append(built.clip_model.logit_scale.exp() * f @ text.t())
        torch.testing.assert_close(model(image), torch.stack(rows), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("method", "original"), [("MaPLe", False), ("MaPLe", True), ("IVLP", False)])
def test_deep_text_prompts_take_the_arrangement_and_the_anchors_hidden_state(tmp_path, data_root, tiny_vit_path,
                                                                              anchor, method, original):
    """MaPLe's as its original; IVLP's (and so PromptSRC's) defined alike (docs/PromptSRC.md)."""
    built = build(data_root, tmp_path, method, tiny_vit_path, anchor,
                  "TRAINER.ANCHOROPT.ORIGINAL_DEEP_ANCHOR", str(original))
    learner = built.model.prompt_learner.eval()
    perturb(learner)
    set_arrangement(learner)
    x = torch.randn(77, learner.n_cls, 64)
    with torch.no_grad():
        out = learner.text_hook(1, x, learner.positions())
        expected = x.clone()
        deep = learner.deep_text_prompt(1)
        for row, (first, second, third) in enumerate(learner.layout.block_positions("ctx").tolist()):
            # The anchor's slot keeps the anchor's hidden state; the original read it one position early.
            expected[first, row] = x[first - int(original), row]
            expected[second, row], expected[third, row] = deep[1], deep[0]
        assert torch.equal(out, expected)
        assert torch.equal(learner.text_hook(2, x, learner.positions()), x)  # past PROMPT_DEPTH: untouched


@pytest.mark.parametrize("held", [True, False])
def test_maple_deep_prompts_give_an_anchor_no_slot_holds_no_gradient(tmp_path, data_root, tiny_vit_path, anchor,
                                                                     held):
    learner = build(data_root, tmp_path, "MaPLe", tiny_vit_path, anchor).model.prompt_learner
    rows = [[0.0, 0, 1], [0, 1, 0], [1, 0, 0]] if held else [[0.0, 1, 0], [0, 1, 0], [1, 0, 0]]
    positions = torch.tensor(rows, requires_grad=True)  # a hard sample, as the straight-through Gumbel gives
    learner.text_hook(1, torch.randn(77, learner.n_cls, 64), positions).sum().backward()
    assert (positions.grad[:, 2].abs().sum() > 0) == held  # the anchor's column


@pytest.mark.parametrize("method", ["MaPLe", "IVLP", "PromptSRC"])
def test_the_anchor_branch_scores_the_unprompted_image_features_without_a_second_clip(tmp_path, data_root,
                                                                                       tiny_vit_path, anchor, method):
    built = build(data_root, tmp_path, method, tiny_vit_path, anchor)
    model = built.model.eval()
    perturb(model)
    image = images(3)
    with torch.no_grad():
        prompted = model.image_features(image)
        expected = built.clip_model.logit_scale.exp() * plain_image_features(built, image) @ \
            anchor_prompt_features(built).t()
        torch.testing.assert_close(model.anchor_logits(image, prompted), expected, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(prompted, plain_image_features(built, image))  # the prompts do change them
    encoders = [m for m in model.modules() if type(m).__name__ == "VisionTransformer"]
    assert len(encoders) == 1


# ----- what learns --------------------------------------------------------------------------------------------
LEARNED = {
    "CoCoOp": {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
               "meta_net.linear2.bias"},
    "MaPLe": {"ctx", "ctx_pos_params", "proj.weight", "proj.bias", "compound_prompts_text.0",
              "compound_prompt_projections.0.weight", "compound_prompt_projections.0.bias"},
    "DePT": {"ctx", "ctx_pos_params", "film_lp_img.scale", "film_lp_img.bias", "film_lp_text.scale",
             "film_lp_text.bias", "linear_probe_proj.weight", "linear_probe_proj.bias"},
    "KgCoOp": {"ctx", "ctx_pos_params"},
    "IVLP": {"ctx", "ctx_pos_params", "VPT", "deep_text.0", "deep_vision.0"},
    "PromptSRC": {"ctx", "ctx_pos_params", "VPT", "deep_text.0", "deep_vision.0"},
}  # fmt: skip


@pytest.mark.parametrize(("method", "opts", "learned"), [
    *[(m, (), LEARNED[m]) for m in METHODS],
    ("CoCoOp", ("TRAINER.ANCHOROPT.COCOOP_LEARN_POSITIONS", "True"), LEARNED["CoCoOp"] | {"ctx_pos_params"}),
    ("CoCoOp", ("TRAINER.ANCHOROPT.COCOOP_TRAIN_META_NET", "False"), {"ctx"}),
])  # fmt: skip
def test_gradients_reach_what_learns_only(tmp_path, data_root, tiny_vit_path, anchor, method, opts, learned):
    built = build(data_root, tmp_path, method, tiny_vit_path, anchor, *opts)
    model = built.model.train()
    names = {n.removeprefix("prompt_learner."): p for n, p in model.named_parameters() if p.requires_grad}
    assert set(names) == learned
    optimised = {id(p) for group in built.optim.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in names.values()}
    perturb(model)  # off the initial values, where the meta-net's 2 hidden units may both be off
    set_arrangement(model.prompt_learner)  # every token in a slot (a random start may put the anchor in all)
    torch.manual_seed(0)
    loss, _ = training_step(model, images(4), LABELS, "fp32", CPU)
    loss.backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None and param.grad.abs().sum() > 0) == (name.removeprefix("prompt_learner.")
                                                                          in learned), name
    assert not model.prompt_learner.anchor.requires_grad


def test_cocoop_positions_stay_at_their_start_but_each_step_draws_an_arrangement(tmp_path, data_root, tiny_vit_path,
                                                                                 anchor):
    """The original's CoCoOp variant: fixed position logits, a Gumbel sample per forward (one per batch)."""
    built = build(data_root, tmp_path, "CoCoOp", tiny_vit_path, anchor)
    start = built.model.prompt_learner.ctx_pos_params.detach().clone()
    built.model.train()
    built.batch_idx, built.num_batches = 0, 10
    torch.manual_seed(0)
    arrangements = {tuple(built.model.prompt_learner.positions().argmax(-1).tolist()) for _ in range(20)}
    assert len(arrangements) > 1
    for _ in range(2):
        built.forward_backward({"img": images(2), "label": LABELS[:2]})
    assert torch.equal(built.model.prompt_learner.ctx_pos_params, start)


# ----- the loss -----------------------------------------------------------------------------------------------
def dept_loss(model, text, image_features, label, w=0.6):
    """DePT's loss written out: (1 - w) CE(similarity) + w CE(head on the FiLM'd text of the labels and images)."""
    sim = model.logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text, dim=-1).t()
    film_text = text * model.film_lp_text.scale + model.film_lp_text.bias
    film_img = image_features * model.film_lp_img.scale + model.film_lp_img.bias
    head = model.linear_probe_proj
    head_logits = torch.cat([film_text[label], film_img]) @ head.weight.t() + head.bias
    return (1 - w) * F.cross_entropy(sim, label) + w * F.cross_entropy(head_logits, torch.cat([label, label]))


def promptsrc_loss(built, image, logits) -> torch.Tensor:
    """PromptSRC's loss written out from CLIP's own encoders (its text features drawn as the step drew them)."""
    model, clip_model = built.model, built.clip_model
    torch.manual_seed(5)
    text = model.text_features()
    features, frozen = model.image_features(image), plain_image_features(built, image)
    teacher = teacher_by_hand(clip_model, [n.replace("_", " ") for n in built.dm.dataset.classnames])
    p_frozen = F.softmax(clip_model.logit_scale.exp() * frozen @ teacher.t(), dim=1)
    kl = (p_frozen * (p_frozen.log() - F.log_softmax(logits, dim=1))).sum() / logits.numel()
    return (F.cross_entropy(logits, LABELS) + kl + 25 * (text - teacher).abs().mean()
            + 10 * (features - frozen).abs().mean())


@pytest.mark.parametrize("method", METHODS)
def test_the_loss_equals_a_plain_recomputation(tmp_path, data_root, tiny_vit_path, anchor, method):
    built = build(data_root, tmp_path, method, tiny_vit_path, anchor)
    model = built.model.train()
    perturb(model)
    image = images(4)
    torch.manual_seed(5)
    loss, logits = training_step(model, image, LABELS, "fp32", CPU)
    with torch.no_grad():
        scale = built.clip_model.logit_scale.exp()
        anchor_logits = scale * plain_image_features(built, image) @ anchor_prompt_features(built).t()
        if method == "DePT":  # the method's loss x PROMPT_CE_WEIGHT, no distillation (KD_WEIGHT is not used)
            torch.manual_seed(5)
            text = model.text_encoder(model.prompt_learner(), model.prompt_learner.eot)
            features = built.clip_model.encode_image(image)
            expected = 2.0 * dept_loss(model, text, features, LABELS)
        elif method == "KgCoOp":  # its loss (CE + W x the distance to the template features) x PROMPT_CE_WEIGHT
            torch.manual_seed(5)
            text = F.normalize(model.text_encoder(model.prompt_learner(), model.prompt_learner.eot), dim=-1)
            distance = 1 - F.cosine_similarity(text, model.templates.encode(model.text_encoder), dim=1).mean()
            expected = (2.0 * (F.cross_entropy(logits, LABELS) + model.weight * distance)
                        + 3.0 * distillation(logits, anchor_logits, 2.0))
        elif method == "PromptSRC":  # its loss x PROMPT_CE_WEIGHT; the anchor branch scores its frozen features
            expected = 2.0 * promptsrc_loss(built, image, logits) + 3.0 * distillation(logits, anchor_logits, 2.0)
        else:
            expected = 2.0 * F.cross_entropy(logits, LABELS) + 3.0 * distillation(logits, anchor_logits, 2.0)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_kd_weight_zero_with_temperature_zero_trains_without_nan(tmp_path, data_root, tiny_vit_path, anchor, method):
    """MaPLe's StanfordCars row: KD_WEIGHT 0, KD_TEMPERATURE 0 (the original divided by T = 0 and got NaN)."""
    built = build(data_root, tmp_path, method, tiny_vit_path, anchor, "TRAINER.ANCHOROPT.KD_WEIGHT", "0.0",
                  "TRAINER.ANCHOROPT.KD_TEMPERATURE", "0.0")
    loss, logits = training_step(built.model.train(), images(4), LABELS, "fp32", CPU)
    assert torch.isfinite(loss)
    if method in ("CoCoOp", "MaPLe", "IVLP"):  # their loss is cross-entropy alone
        torch.testing.assert_close(loss, 2.0 * F.cross_entropy(logits, LABELS))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("prec", ["fp32", "bf16", "fp16", "amp"])
def test_every_precision_trains_on_the_cpu(tmp_path, data_root, tiny_vit_path, anchor, method, prec):
    node = {"CoCoOp": "COCOOP", "MaPLe": "MAPLE", "IVLP": "IVLP", "PromptSRC": "PROMPTSRC"}.get(method, "COOP")
    built = build(data_root, tmp_path, method, tiny_vit_path, anchor, f"TRAINER.{node}.PREC", prec)
    loss, logits = training_step(built.model.train(), images(4), LABELS, built.prec, CPU)
    assert torch.isfinite(loss) and torch.isfinite(logits).all()
    loss.backward()
    assert built.model.prompt_learner.ctx.grad is not None


# ----- the test rule, checkpoints, end to end -----------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_checkpoints_round_trip(tmp_path, data_root, tiny_vit_path, anchor, method):
    trained = build(data_root, tmp_path / "a", method, tiny_vit_path, anchor)
    trained.set_model_mode("eval")
    fresh = build(data_root, tmp_path / "b", method, tiny_vit_path, anchor)
    fresh.set_model_mode("eval")
    assert_round_trip(trained, fresh, tmp_path / "ckpt")


@pytest.mark.parametrize("fusion", [True, False])
def test_dept_base_classes_use_its_fused_or_head_logits_and_new_classes_average_both_branches(
        tmp_path, data_root, tiny_vit_path, anchor, fusion):
    opts = ("TRAINER.LINEAR_PROBE.TEST_TIME_FUSION", str(fusion))
    base = build(data_root, tmp_path, "DePT", tiny_vit_path, anchor, *opts)
    model = base.model.eval()
    perturb(model)
    image = images(4)
    with torch.no_grad():
        features = built_features = base.clip_model.encode_image(image)
        text = model.text_encoder(model.prompt_learner(), model.prompt_learner.eot)
        sim = base.clip_model.logit_scale.exp() * F.normalize(built_features, dim=-1) @ F.normalize(text, dim=-1).t()
        head = (features * model.film_lp_img.scale + model.film_lp_img.bias) @ model.linear_probe_proj.weight.t() \
            + model.linear_probe_proj.bias
        torch.testing.assert_close(model(image), 0.4 * sim + 0.6 * head if fusion else head, rtol=1e-4, atol=1e-4)

    new = build(data_root, tmp_path, "DePT", tiny_vit_path, anchor, *opts, subsample="new")
    new.model.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("linear_probe")},
                              strict=False)
    new.model.eval()
    with torch.no_grad():
        text = new.model.text_encoder(new.model.prompt_learner(), new.model.prompt_learner.eot)
        sim = new.clip_model.logit_scale.exp() * F.normalize(features, dim=-1) @ F.normalize(text, dim=-1).t()
        anchor_logits = new.clip_model.logit_scale.exp() * plain_image_features(new, image) @ \
            anchor_prompt_features(new).t()
        torch.testing.assert_close(new.model(image), (sim + anchor_logits) / 2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_base_to_new_through_train_py(tmp_path, data_root, tiny_vit_path, anchor, method):
    train_dir = tmp_path / "seed1"
    assert train.main(args(data_root, train_dir, method, tiny_vit_path, anchor, "DATASET.SUBSAMPLE_CLASSES",
                           "base")) == 0
    trained = read_record(str(train_dir))
    assert trained["status"] == "finished" and trained["method"] == f"{method}_AnchorOPT"
    assert trained["prompt"]["anchor_len"] == 1 and len(trained["prompt"]["arrangement"]) == 3
    log = (train_dir / "log.txt").read_text()
    assert "AnchorOPT: the learned arrangement is" in log and "testing with the normal branch" in log

    eval_dir = train_dir / "evaluation"  # where the original's scripts put it
    extra = ["--eval-only", "--model-dir", str(train_dir), "--load-epoch", "1"]
    assert train.main(args(data_root, eval_dir, method, tiny_vit_path, anchor, "DATASET.SUBSAMPLE_CLASSES", "new",
                           extra=extra)) == 0
    evaluated = read_record(str(eval_dir))
    assert evaluated["status"] == "finished" and "accuracy" in evaluated["metrics"]
    assert evaluated["prompt"]["arrangement"] == trained["prompt"]["arrangement"]
    assert "the average of the normal and anchor branches" in (eval_dir / "log.txt").read_text()
