"""KgCoOp / KgCoOp+ATPrompt on a tiny Caltech101 and a tiny CLIP: the loss, what learns, checkpoints, end to end."""

import pytest
import torch
import torch.nn.functional as F
from fake_data import assert_round_trip, build_from, images, perturb, run_args

import clip
import train
from trainers.base import training_step
from trainers.config import get_cfg, merge_file

OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "OPTIM.MAX_EPOCH", "2",
    "TRAINER.COOP.N_CTX", "2",
    "TRAINER.COOP.W", "8.0",
    "TRAINER.ATPROMPT.N_ATT1", "2",
    "TRAINER.ATPROMPT.N_ATT2", "2",
]  # fmt: skip
TRAINERS = ["KgCoOp_ATP", "KgCoOp"]
CPU = torch.device("cpu")


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    return run_args(data_root, out, trainer, clip_path, "KgCoOp/vit_b16_ep100_ctxv4.yaml", *OPTS, *opts, extra=extra)


def build(data_root, out, trainer, clip_path, *opts):
    return build_from(args(data_root, out, trainer, clip_path, "DATASET.SUBSAMPLE_CLASSES", "base", *opts))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_loss_is_ce_plus_w_times_the_distance_to_clips_own_text_features(tmp_path, data_root, tiny_vit_path,
                                                                          trainer):
    built = build(data_root, tmp_path, trainer, tiny_vit_path)
    model = built.model.train()
    perturb(model)
    image, labels = images(4), torch.tensor([0, 2, 1, 2])
    loss, logits = training_step(model, image, labels, "fp32", CPU)

    # The same numbers written out with CLIP's own encode_text on the hand-written prompts.
    prompts = [f"a photo of a {name.replace('_', ' ')}." for name in built.dm.dataset.classnames]
    with torch.no_grad():
        reference = F.normalize(built.clip_model.encode_text(clip.tokenize(prompts)), dim=-1)
    text = F.normalize(model.text_encoder(model.prompt_learner(), model.prompt_learner.eot), dim=-1)
    expected_logits = model.logit_scale.exp() * F.normalize(model.image_encoder(image), dim=-1) @ text.t()
    distance = 1 - (text * reference).sum(-1).mean()
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(loss, F.cross_entropy(expected_logits, labels) + 8.0 * distance)
    assert distance > 1e-3  # the extra term counts


def test_w_zero_is_coop(tmp_path, data_root, tiny_vit_path):
    kg = build(data_root, tmp_path / "kg", "KgCoOp_ATP", tiny_vit_path, "TRAINER.COOP.W", "0.0")
    coop = build(data_root, tmp_path / "coop", "CoOp_ATP", tiny_vit_path, "TRAINER.COOP.CTX_INIT", "a photo of a")
    coop.model.prompt_learner.load_state_dict(kg.model.prompt_learner.state_dict())
    image, labels = images(4), torch.tensor([0, 2, 1, 2])
    kg_loss, _ = training_step(kg.model, image, labels, "fp32", CPU)
    coop_loss, _ = training_step(coop.model, image, labels, "fp32", CPU)
    torch.testing.assert_close(kg_loss, coop_loss)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_only_the_prompts_learn(tmp_path, data_root, tiny_vit_path, trainer):
    model = build(data_root, tmp_path, trainer, tiny_vit_path).model.train()
    loss, _ = training_step(model, images(4), torch.tensor([0, 2, 1, 2]), "fp32", CPU)
    loss.backward()
    with_grad = sorted(n for n, p in model.named_parameters() if p.grad is not None)
    expected = ["prompt_learner.ctx"] + ([f"prompt_learner.ctx_att{k}" for k in (1, 2)] if trainer.endswith("ATP")
                                         else [])
    assert with_grad == sorted(expected)
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("prompt_learner."))


def test_word_initialised_context_and_the_template_of_the_dataset(tmp_path, data_root, tiny_vit_path):
    vanilla = build(data_root, tmp_path / "a", "KgCoOp", tiny_vit_path).model
    tokens = clip.tokenize("a photo of a")[0, 1:5]
    assert torch.equal(vanilla.prompt_learner.ctx, vanilla.prompt_learner.token_embeds[0, 1:5])
    assert vanilla.prompt_learner.layout.token_ids[0, 1:5].tolist() == tokens.tolist()
    atp = build(data_root, tmp_path / "b", "KgCoOp_ATP", tiny_vit_path).model
    assert atp.prompt_learner.ctx.shape[0] == 2  # ATPrompt's context is random, N_CTX tokens


def test_the_originals_config_with_ctx_init_true_merges(tmp_path):
    original = tmp_path / "kgcoop.yaml"
    original.write_text("TRAINER:\n  COOP:\n    CTX_INIT: True\n")
    cfg = get_cfg()
    merge_file(cfg, str(original), "--config-file")
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"


@pytest.mark.parametrize("trainer", TRAINERS)
def test_checkpoint_round_trip(tmp_path, data_root, tiny_vit_path, trainer):
    assert_round_trip(build(data_root, tmp_path / "a", trainer, tiny_vit_path),
                      build(data_root, tmp_path / "b", trainer, tiny_vit_path), tmp_path / "ckpt")


@pytest.mark.parametrize("trainer", TRAINERS)
def test_base_to_new_through_train_py(tmp_path, data_root, tiny_vit_path, trainer):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    assert train.main(args(data_root, train_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
    assert "* accuracy:" in (train_dir / "log.txt").read_text()
    eval_args = ["--eval-only", "--model-dir", str(train_dir), "--load-epoch", "2"]
    assert train.main(args(data_root, eval_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                           extra=eval_args)) == 0
    assert "* accuracy:" in (eval_dir / "log.txt").read_text()
