"""AnchorOPT on CoOp (stage I and II) on a tiny CLIP and a tiny Caltech101: layouts, losses against plain
re-computations, gradient scope, anchor files (ours and the original's), the test rule, end to end, bad input."""

import json
import os
import pickle
import re

import pytest
import torch
import torch.nn.functional as F
from fake_data import CLASSES, build_from, images, perturb, run_args
from tiny_clip import make_tiny_clip, save_state_dict

import clip
import train
from dassl.engine.records import read_record
from dassl.utils import set_random_seed
from dassl.utils.errors import UserError
from trainers import anchor_files
from trainers.anchoropt import distillation
from trainers.base import training_step
from trainers.layout import Anchoring, describe_arrangement
from trainers.prompting import PromptLearner, TextEncoder

CPU = torch.device("cpu")
OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "OPTIM.MAX_EPOCH", "2",
    "TRAINER.ANCHOROPT.N_CTX", "2",
    "TRAINER.ANCHOROPT.MAX_TEMPLATE_LENGTH", "3",
    "TRAINER.ANCHOROPT.ANCHOR_MSE_WEIGHT", "1000.0",
    "TRAINER.ANCHOROPT.PROMPT_CE_WEIGHT", "2.0",
    "TRAINER.ANCHOROPT.KD_WEIGHT", "3.0",
    "TRAINER.ANCHOROPT.KD_TEMPERATURE", "2.0",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_clip("vit", seed=0).requires_grad_(False)


def describe(name: str, n: int) -> list[str]:
    return [f"a photo of a {name}, number {i}." for i in range(n)]


@pytest.fixture(scope="module")
def descriptions(tmp_path_factory):
    """Descriptions of the six classes; "face" has fewer than MAX_TEMPLATE_LENGTH (3)."""
    path = tmp_path_factory.mktemp("descriptions") / "caltech.json"
    table = {name.replace("_", " "): describe(name, 2 if name == "face" else 5) for name in CLASSES}
    path.write_text(json.dumps(table))
    return path


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    return run_args(data_root, out, trainer, clip_path, "CoOp/vit_b16.yaml", *OPTS, *opts, extra=extra)


@pytest.fixture(scope="module")
def anchor_run(tmp_path_factory, data_root, descriptions, tiny_vit_path):
    """A finished stage-I run: its folder holds anchor.pth and the anchor_prompt_learner checkpoints."""
    out = tmp_path_factory.mktemp("stage1") / "seed1"
    assert train.main(args(data_root, out, "CoOp_Pretrain_Anchor", tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                           "TRAINER.ANCHOROPT.DESCRIPTIONS", str(descriptions))) == 0
    return out


def stage_two(data_root, out, clip_path, anchor, *opts, trainer="CoOp_AnchorOPT"):
    return build_from(args(data_root, out, trainer, clip_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                           "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(anchor), *opts))


def full_prompt_features(clip_model, text: str, soft: dict[int, torch.Tensor]) -> torch.Tensor:
    """The plain computation: the 77-token embeddings of `text` with the given positions replaced, through CLIP's
    text tower pooled at the EOT token, normalised."""
    ids = clip.tokenize([text])
    embeds = clip_model.token_embedding(ids).clone()
    for position, token in soft.items():
        embeds[0, position] = token
    encoder = TextEncoder(clip_model)
    encoder.full_context = True
    return F.normalize(encoder(embeds, ids.argmax(dim=-1)), dim=-1)[0]


# ----- layouts ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("original_eot", [False, True])
def test_normal_branch_prompt_is_the_arranged_context(tiny, original_eot):
    learner = PromptLearner(tiny, ["sea lion", "cat"], 2, anchoring=Anchoring(1, original_eot=original_eot)).eval()
    with torch.no_grad():
        learner.ctx.copy_(torch.randn(2, 64))
        learner.set_anchor(torch.randn(1, 64), "test")
        learner.ctx_pos_params.copy_(torch.tensor([[0.0, 0, 5], [5, 0, 0], [5, 0, 0]]))  # slots: anchor, ctx1, ctx1
    assert describe_arrangement(learner.ctx_pos_params, 2) == ["anchor1", "ctx1", "ctx1"]
    prompts = learner()
    for row, name in enumerate(["sea lion", "cat"]):
        ids = clip.tokenize([f"X X X {name}."])[0]
        expected = tiny.token_embedding(ids)[: prompts.shape[1]].clone()
        expected[1], expected[2], expected[3] = learner.anchor[0], learner.ctx[0], learner.ctx[0]
        assert torch.equal(prompts[row], expected)
        eot = int(ids.argmax())
        # The original pooled one token early, at the ".", as its token ids had no slot for the anchor.
        assert learner.eot[row] == (eot - 1 if original_eot else eot)
        assert ids[learner.eot[row]] == (clip.tokenize(["."])[0, 1] if original_eot else ids[eot])


def test_training_samples_hard_arrangements_and_evaluation_takes_the_chosen_one(tiny):
    learner = PromptLearner(tiny, ["cat"], 3, anchoring=Anchoring(1, gumbel_temp=1.0))
    learner.set_anchor(torch.randn(1, 64), "test")
    torch.manual_seed(0)
    samples = [learner.train().positions() for _ in range(20)]
    for p in samples:
        assert torch.equal(p.detach().sum(dim=-1), torch.ones(4)) and set(p.detach().unique().tolist()) <= {0, 1}
    assert len({tuple(p.argmax(-1).tolist()) for p in samples}) > 1  # fresh Gumbel noise each forward
    chosen = learner.eval().positions()
    assert torch.equal(chosen.argmax(-1), learner.ctx_pos_params.argmax(-1))
    assert torch.equal(learner(), learner())
    learner.anchoring = Anchoring(1, eval_gumbel=True)  # the original's test-time sampling
    assert learner.is_random


# ----- stage II: the model, the loss, what learns -------------------------------------------------------------
def test_anchor_branch_and_loss_equal_a_plain_recomputation(tmp_path, data_root, tiny_vit_path, anchor_run):
    built = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run)
    model, learner = built.model.train(), built.model.prompt_learner
    perturb(model)
    image, label = images(4), torch.tensor([0, 2, 1, 2])
    torch.manual_seed(5)
    loss, logits = training_step(model, image, label, "fp32", CPU)
    torch.manual_seed(5)
    anchor_logits_seen = model.forward_train(image)["anchor_logits"]

    clip_model = built.clip_model
    anchor = learner.anchor
    names = [n.replace("_", " ") for n in built.dm.dataset.classnames]
    with torch.no_grad():
        torch.manual_seed(5)
        positions = learner.positions()  # the same Gumbel sample as the step drew
        slots = positions @ torch.cat([learner.ctx, anchor])
        normal = torch.stack([full_prompt_features(clip_model, f"X X X {n}.", {1 + i: slots[i] for i in range(3)})
                              for n in names])
        anchor_text = torch.stack([full_prompt_features(clip_model, f"X of {n}.", {1: anchor[0]}) for n in names])
        image_features = F.normalize(clip_model.encode_image(image), dim=-1)
        scale = clip_model.logit_scale.exp()
        normal_logits, anchor_logits = scale * image_features @ normal.t(), scale * image_features @ anchor_text.t()
        ens = (normal_logits + anchor_logits) / 2
        t = 2.0
        p = F.softmax(ens / t, dim=1)
        kl = (p * (p.log() - F.log_softmax(normal_logits / t, dim=1))).sum() * t * t / ens.numel()
        expected = 2.0 * F.cross_entropy(normal_logits, label) + 3.0 * kl
    torch.testing.assert_close(logits, normal_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(anchor_logits_seen, anchor_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(distillation(normal_logits, anchor_logits, t), kl, rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_context_and_the_position_logits_only(tmp_path, data_root, tiny_vit_path, anchor_run):
    built = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run)
    trainable = sorted(n for n, p in built.model.named_parameters() if p.requires_grad)
    assert trainable == ["prompt_learner.ctx", "prompt_learner.ctx_pos_params"]
    loss, _ = training_step(built.model.train(), images(4), torch.tensor([0, 1, 2, 0]), "fp32", CPU)
    loss.backward()
    learner = built.model.prompt_learner
    assert learner.ctx.grad.abs().sum() > 0 and learner.ctx_pos_params.grad.abs().sum() > 0
    assert not learner.anchor.requires_grad
    assert all(p.grad is None for n, p in built.model.named_parameters() if not p.requires_grad)


def test_kd_weight_zero_drops_the_term_and_a_zero_temperature_is_refused_otherwise(tmp_path, data_root,
                                                                                    tiny_vit_path, anchor_run):
    built = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run, "TRAINER.ANCHOROPT.KD_WEIGHT", "0.0",
                      "TRAINER.ANCHOROPT.KD_TEMPERATURE", "0.0")  # MaPLe's StanfordCars row
    image, label = images(4), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(1)
    loss, logits = training_step(built.model.train(), image, label, "fp32", CPU)
    assert torch.isfinite(loss) and torch.allclose(loss, 2.0 * F.cross_entropy(logits, label))
    with pytest.raises(UserError, match="KD_TEMPERATURE is 0.0 with KD_WEIGHT 3.0: .* set it > 0, or set KD_WEIGHT"):
        stage_two(data_root, tmp_path, tiny_vit_path, anchor_run, "TRAINER.ANCHOROPT.KD_TEMPERATURE", "0.0")


def test_anchoropt_settings_are_refused_before_anything_loads_or_is_written(tmp_path, data_root, tiny_vit_path,
                                                                            capsys):
    argv = args(data_root, tmp_path / "out", "CoOp_AnchorOPT", tiny_vit_path, "TRAINER.ANCHOROPT.ANCHOR_LEN", "0")
    assert train.main(argv) == 2
    out, err = capsys.readouterr()
    assert "TRAINER.ANCHOROPT.ANCHOR_LEN is 0: the anchor needs at least 1 token" in err
    assert "Loading" not in out and not (tmp_path / "out").exists()


def test_the_anchor_features_are_computed_once_per_anchor(tmp_path, data_root, tiny_vit_path, anchor_run):
    model = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run).model.train()
    first = model.anchor_text_features()
    assert model.anchor_text_features() is first
    model.prompt_learner.set_anchor(torch.randn(1, 64), "test")
    assert not torch.equal(model.anchor_text_features(), first)


def test_deterministic_evaluation_gives_the_same_accuracy_twice(tmp_path, data_root, tiny_vit_path, anchor_run):
    built = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run)
    perturb(built.model)
    assert built.test() == built.test()
    sampled = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run, "TRAINER.ANCHOROPT.EVAL_GUMBEL", "True")
    sampled.model.load_state_dict(built.model.state_dict())
    sampled.model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        outputs = [sampled.model(images(8)) for _ in range(5)]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])  # the original's random test


@pytest.mark.parametrize("prec", ["fp32", "bf16", "fp16", "amp"])
def test_every_precision_trains_on_the_cpu(tmp_path, data_root, tiny_vit_path, anchor_run, prec):
    built = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run, "TRAINER.COOP.PREC", prec)
    loss, logits = training_step(built.model.train(), images(4), torch.tensor([0, 1, 2, 0]), built.prec, CPU)
    assert torch.isfinite(loss) and torch.isfinite(logits).all()
    assert built.prec == ("bf16" if prec == "bf16" else "fp32")  # fp16 and amp need a GPU


def test_atprompt_and_anchoropt_combine(tmp_path, data_root, tiny_vit_path, anchor_run):
    built = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run, "TRAINER.ANCHOROPT.USE_ANCHOROPT", "True",
                      "TRAINER.ATPROMPT.USE_ATPROMPT", "True",
                      "TRAINER.ATPROMPT.ATTRIBUTES", "['color', 'shape']", "TRAINER.ATPROMPT.N_ATTS", "[1]",
                      trainer="CoOp_ATP")
    learner = built.model.prompt_learner
    assert [b for b in learner.layout.blocks] == [("ctx_att1", 1), ("ctx_att2", 1), ("ctx", 3)]
    row = learner.layout.token_ids[0]
    assert clip.tokenize(["X color X shape X X X airplane."])[0].tolist()[: len(row)] == row.tolist()
    loss, _ = training_step(built.model.train(), images(4), torch.tensor([0, 1, 2, 0]), "fp32", CPU)
    loss.backward()
    assert learner.ctx_att1.grad is not None and learner.ctx_pos_params.grad is not None
    assert built.method_name() == "CoOp_ATP_AnchorOPT"


def test_the_original_draws_come_in_its_order(tmp_path, data_root, tiny_vit_path, anchor_run):
    """Stage II: CLIP, the anchor's placeholder values, a second CLIP, the context, the position logits."""
    from clip.model import CLIP, infer_config

    set_random_seed(3)
    stage_two(data_root, tmp_path, tiny_vit_path, anchor_run)
    after = torch.get_rng_state()
    set_random_seed(3)
    weights = torch.load(tiny_vit_path, weights_only=True)
    CLIP(**infer_config(weights))
    torch.nn.init.normal_(torch.empty(1, 64), std=0.02)
    CLIP(**infer_config(weights))
    ctx = torch.nn.init.normal_(torch.empty(2, 64), std=0.02)
    positions = torch.randn(3, 3)
    assert torch.equal(torch.get_rng_state(), after)
    set_random_seed(3)
    learner = stage_two(data_root, tmp_path, tiny_vit_path, anchor_run).model.prompt_learner
    assert torch.equal(learner.ctx.detach(), ctx) and torch.equal(learner.ctx_pos_params.detach(), positions)


# ----- stage I ------------------------------------------------------------------------------------------------
def stage_one(data_root, out, clip_path, descriptions, *opts):
    built = build_from(args(data_root, out, "CoOp_Pretrain_Anchor", clip_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                            "TRAINER.ANCHOROPT.DESCRIPTIONS", str(descriptions), *opts))
    built.before_train()
    return built


def test_stage_one_loss_is_the_mse_to_the_descriptions_with_or_without_the_image_pass(tmp_path, data_root,
                                                                                      tiny_vit_path, descriptions):
    built = stage_one(data_root, tmp_path, tiny_vit_path, descriptions)
    model = built.model.train()
    perturb(model)
    losses, grads = [], []
    for plain in (False, True):
        model.use_plain_computation(plain)
        model.prompt_learner.anchor_ctx_1.grad = None
        loss, logits = training_step(model, images(4) if plain else None, None, "fp32", CPU)
        loss.backward()
        losses.append(loss.detach())
        grads.append(model.prompt_learner.anchor_ctx_1.grad.clone())
        assert logits is None
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)  # 77 tokens vs the truncated prompt

    # Written out: 1000 x the mean over classes of each class's mean squared difference over its descriptions.
    clip_model, anchor = built.clip_model, model.prompt_learner.anchor_ctx_1.detach()
    per_class = []
    with torch.no_grad():
        for name in built.dm.dataset.classnames:
            name = name.replace("_", " ")
            feature = full_prompt_features(clip_model, f"X of {name}.", {1: anchor[0]})
            kept = describe(name.replace(" ", "_"), 2 if name == "face" else 5)[:3]
            targets = F.normalize(clip_model.encode_text(clip.tokenize(kept)), dim=-1)
            per_class.append(F.mse_loss(feature.expand_as(targets), targets))
    torch.testing.assert_close(losses[0], 1000 * torch.stack(per_class).mean(), rtol=1e-5, atol=1e-7)


def test_stage_one_trains_without_loading_an_image(tmp_path, data_root, tiny_vit_path, descriptions, monkeypatch):
    built = stage_one(data_root, tmp_path, tiny_vit_path, descriptions)
    monkeypatch.setattr(type(built.train_loader_x), "__iter__", lambda self: pytest.fail("an image was loaded"))
    before = built.model.prompt_learner.anchor_ctx_1.detach().clone()
    built.epoch, built.max_epoch = 0, 1
    built.run_epoch()
    assert built.num_batches == len(built.train_loader_x) > 0
    assert not torch.equal(before, built.model.prompt_learner.anchor_ctx_1)


def test_stage_one_writes_an_anchor_file_and_tests_the_anchor_prompt(anchor_run, tiny_vit_path):
    record = read_record(str(anchor_run))
    assert record["method"] == "AnchorPretrain" and 0 <= record["metrics"]["accuracy"] <= 100
    content = torch.load(anchor_run / anchor_files.ANCHOR_FILE, weights_only=True)
    assert content["format"] == anchor_files.ANCHOR_FORMAT and content["anchor"].shape == (1, 64)
    assert content["classes"] == CLASSES[:3] and content["backbone"]["sha256"] == record["backbone"]["sha256"]
    saved = torch.load(anchor_run / "anchor_prompt_learner" / "model.pth.tar-2", weights_only=True)
    assert torch.equal(saved["state_dict"]["anchor_ctx_1"].float(), content["anchor"])


def test_stage_one_evaluates_the_anchor_on_new_classes(tmp_path, data_root, tiny_vit_path, anchor_run):
    out = tmp_path / "evaluation"
    assert train.main(args(data_root, out, "CoOp_Pretrain_Anchor", tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                           extra=["--eval-only", "--model-dir", str(anchor_run), "--load-epoch", "2"])) == 0
    assert read_record(str(out))["subsample"] == "new"


# ----- anchor files -------------------------------------------------------------------------------------------
def released_anchor(path, anchor: torch.Tensor, n_cls: int = 3, scheduler=None) -> None:
    """A file with the structure of the original's anchor_weights/<Dataset>/anchor_prompt_learner/model.pth.tar."""
    param = torch.nn.Parameter(anchor.half())
    optim = torch.optim.SGD([torch.nn.Parameter(anchor.half())], lr=0.002, momentum=0.9)
    optim.param_groups[0]["params"][0].grad = torch.ones_like(param)
    optim.step()  # fp16 momentum buffers, as in the released files
    if scheduler is None:
        scheduler = {"successor": torch.optim.lr_scheduler.CosineAnnealingLR(optim, 100), "last_epoch": 100}
    state = {"anchor_ctx_1": param.detach(), "token_prefix": torch.zeros(n_cls, 1, 64).half(),
             "token_of": torch.zeros(n_cls, 1, 64).half(), "token_suffix": torch.zeros(n_cls, 74, 64).half()}
    torch.save({"state_dict": state, "epoch": 100, "optimizer": optim.state_dict(), "scheduler": scheduler,
                "val_result": None}, path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_the_original_released_anchor_files_load_and_a_malicious_one_is_refused(tmp_path, data_root,
                                                                                 tiny_vit_path, monkeypatch):
    anchor = torch.randn(1, 64).half().float()
    folder = tmp_path / "anchor_weights" / "Caltech101" / "anchor_prompt_learner"
    folder.mkdir(parents=True)
    released_anchor(folder / "model.pth.tar", anchor)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(folder / "model.pth.tar", weights_only=True)  # why a plain torch.load would not do
    # The default lookup: ANCHOR_DIR/<Dataset>/anchor_prompt_learner/model.pth.tar, the original's layout.
    built = build_from(args(data_root, tmp_path / "run", "CoOp_AnchorOPT", tiny_vit_path,
                            "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.ANCHOROPT.ANCHOR_DIR",
                            str(tmp_path / "anchor_weights")))
    assert torch.equal(built.model.prompt_learner.anchor, anchor)

    monkeypatch.chdir(tmp_path)
    released_anchor(tmp_path / "evil.pth.tar", anchor, scheduler=Exploit())
    with pytest.raises(UserError, match="Refusing to load .*posix.system"):
        anchor_files.read_anchor(str(tmp_path / "evil.pth.tar"), 1, 64)
    assert not (tmp_path / "pwned").exists()


def test_an_anchor_of_another_backbone_is_refused(tmp_path, data_root, tiny_vit_path, anchor_run):
    other_clip = tmp_path / "other_clip.pt"
    save_state_dict(make_tiny_clip("vit", seed=1), other_clip)
    with pytest.raises(UserError, match="was trained on .*tiny_vit.pt .* use an anchor of this backbone"):
        stage_two(data_root, tmp_path, other_clip, anchor_run)


# ----- end to end ---------------------------------------------------------------------------------------------
def test_base_to_new_through_train_py(tmp_path, data_root, tiny_vit_path, anchor_run):
    out = tmp_path / "seed1"
    common = ["TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(anchor_run)]
    assert train.main(args(data_root, out, "CoOp_AnchorOPT", tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                           *common)) == 0
    record = read_record(str(out))
    assert record["method"] == "CoOp_AnchorOPT" and len(record["prompt"]["arrangement"]) == 3
    assert record["prompt"]["anchor"] == anchor_files.find_anchor(str(anchor_run))
    checkpoint = torch.load(out / "normal_prompt_learner" / "model.pth.tar-2", weights_only=True)
    assert {"ctx", "ctx_pos_params", "anchor"} <= set(checkpoint["state_dict"])
    assert checkpoint["meta"]["prompt"]["arrangement"] == record["prompt"]["arrangement"]
    log = (out / "log.txt").read_text()
    assert "testing with the normal branch" in log

    # The novel classes: no anchor file is needed, the checkpoint carries it; the test averages both branches.
    evaluation = out / "evaluation"
    assert train.main(args(data_root, evaluation, "CoOp", tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                           "TRAINER.ANCHOROPT.USE_ANCHOROPT", "True",
                           extra=["--eval-only", "--model-dir", str(out), "--load-epoch", "2"])) == 0
    assert "the average of the normal and anchor branches" in (evaluation / "log.txt").read_text()
    assert read_record(str(evaluation))["method"] == "CoOp_AnchorOPT"


def test_evaluation_keeps_the_trained_anchor_unless_asked_for_the_targets(tmp_path, data_root, tiny_vit_path,
                                                                         anchor_run):
    trained = stage_two(data_root, tmp_path / "a", tiny_vit_path, anchor_run)
    perturb(trained.model)
    trained.save_model(0, str(tmp_path / "model"))
    other = tmp_path / "other.pth"
    released_anchor(other, torch.randn(1, 64))

    def logits(anchor, *opts):
        fresh = build_from(args(data_root, tmp_path / "b", "CoOp_AnchorOPT", tiny_vit_path,
                                "DATASET.SUBSAMPLE_CLASSES", "new", "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(anchor),
                                *opts))
        fresh.load_model(str(tmp_path / "model"))
        fresh.set_model_mode("eval")
        with torch.no_grad():
            return fresh.model_inference(images(4))

    source = logits(anchor_run, "TRAINER.ANCHOROPT.TARGET_ANCHOR", "True")  # the file is the training anchor
    assert torch.allclose(logits(other), source, atol=1e-6)  # the anchor the checkpoint carries wins
    assert not torch.allclose(logits(other, "TRAINER.ANCHOROPT.TARGET_ANCHOR", "True"), source, atol=1e-3)


def test_evaluation_during_training_works(tmp_path, data_root, tiny_vit_path, anchor_run):
    out = tmp_path / "run"
    assert train.main(args(data_root, out, "CoOp_AnchorOPT", tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base",
                           "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(anchor_run), "TEST.FINAL_MODEL", "best_val")) == 0
    assert (out / "log.txt").read_text().count("Evaluate on the *val* set") == 2


# ----- bad input ----------------------------------------------------------------------------------------------
def bad_json(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("descriptions-missing", "no class-description file .*nothing.json: write it with `python3 gpt_query.py "
                                 "--descriptions --dataset-config-file configs/datasets/caltech101.yaml"),
        ("descriptions-not-a-table", r'is not a JSON object \{"class name": \["sentence", ...\]\}'),
        ("descriptions-of-other-classes", "has no descriptions of 3 of the 3 classes .*'airplane'"),
        ("anchor-missing", "no anchor at .*none.pth: train one with scripts/coop/anchoropt_pretrain_anchor.sh"),
        ("anchor-width", r"the anchor in .* is \[1, 32\] but this model takes \[1, 64\]"),
        ("anchor-not-an-anchor", "is not an anchor file"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_is_written(tmp_path, data_root, tiny_vit_path, descriptions,
                                                            capsys, case, message):
    out = tmp_path / "out"
    stage1 = ["CoOp_Pretrain_Anchor", "TRAINER.ANCHOROPT.DESCRIPTIONS"]
    stage2 = ["CoOp_AnchorOPT", "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS"]
    if case == "anchor-width":
        released_anchor(tmp_path / "narrow.pth", torch.randn(1, 32))
    if case == "anchor-not-an-anchor":
        torch.save({"state_dict": {"ctx": torch.zeros(2, 64)}}, tmp_path / "coop.pth")
    (trainer, key), value = {
        "descriptions-missing": (stage1, tmp_path / "nothing.json"),
        "descriptions-not-a-table": (stage1, bad_json(tmp_path, "list.json", '["a", "b"]')),
        "descriptions-of-other-classes": (stage1, bad_json(tmp_path, "zebra.json", '{"zebra": ["a zebra."]}')),
        "anchor-missing": (stage2, tmp_path / "none.pth"),
        "anchor-width": (stage2, tmp_path / "narrow.pth"),
        "anchor-not-an-anchor": (stage2, tmp_path / "coop.pth"),
    }[case]
    assert train.main(args(data_root, out, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base", key,
                           str(value))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0]), err[0]
    assert not out.exists()
