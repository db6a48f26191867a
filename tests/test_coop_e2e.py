"""CoOp / CoOp+ATPrompt / zero-shot CLIP end to end through train.py on a tiny Caltech101 and a tiny CLIP."""

from pathlib import Path

import pytest
import torch
from fake_data import build_from, run_args, save_original_checkpoint

import train
from dassl.utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "DATALOADER.TEST.BATCH_SIZE", "8",
    "OPTIM.MAX_EPOCH", "2",
    "TRAINER.COOP.N_CTX", "2",
    "TRAINER.ATPROMPT.N_ATT1", "2",
    "TRAINER.ATPROMPT.N_ATT2", "2",
]  # fmt: skip


def args(data_root, out, trainer, clip_path, *opts, extra=()):
    return run_args(data_root, out, trainer, clip_path, "CoOp/vit_b16.yaml", *OPTS, *opts, extra=extra)


def log_of(folder: Path) -> str:
    return (folder / "log.txt").read_text()


@pytest.mark.parametrize("trainer", ["CoOp_ATP", "CoOp"])
def test_base_to_new(tmp_path, data_root, tiny_vit_path, trainer):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    assert train.main(args(data_root, train_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
    assert (train_dir / "prompt_learner" / "model.pth.tar-2").is_file()
    log = log_of(train_dir)
    assert "Finish training" in log and "* accuracy:" in log
    assert ("ATPrompt attributes: shape (2 soft tokens), size (2 soft tokens)" in log) == (trainer == "CoOp_ATP")

    eval_args = ["--eval-only", "--model-dir", str(train_dir), "--load-epoch", "2"]
    assert train.main(args(data_root, eval_dir, trainer, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "new",
                           extra=eval_args)) == 0
    log = log_of(eval_dir)
    assert "* accuracy:" in log and "* macro_f1:" in log and "model.pth.tar-2" in log
    assert sorted(p.name for p in eval_dir.iterdir()) == [".run.lock", "log.txt", "results.json"]  # no checkpoints


def test_zero_shot(tmp_path, data_root, tiny_rn_path):
    out = tmp_path / "zs"
    assert train.main(args(data_root, out, "ZeroshotCLIP", tiny_rn_path, extra=["--eval-only"])) == 0
    assert "* accuracy:" in log_of(out)


def build(data_root, out, trainer, clip_path, *opts):
    return build_from(args(data_root, out, trainer, clip_path, *opts))


def test_original_checkpoint_loads_and_predicts_the_same(tmp_path, data_root, tiny_vit_path):
    """A CoOp_ATP checkpoint in the original's format (all three attribute blocks, token buffers) loads."""
    ours = build(data_root, tmp_path / "a", "CoOp_ATP", tiny_vit_path)
    learner = ours.model.prompt_learner
    original = {"ctx": learner.ctx.detach().clone() + 0.5, "ctx_att3": torch.zeros(2, learner.ctx.shape[-1])}
    original.update({f"ctx_att{k}": getattr(learner, f"ctx_att{k}").detach() - 0.25 for k in (1, 2)})
    original.update({k: torch.zeros(1) for k in ("token_prefix", "token_middle1", "token_middle2", "token_suffix")})
    save_original_checkpoint(original, tmp_path / "original" / "prompt_learner", 7)

    ours.load_model(str(tmp_path / "original"), epoch=7)
    assert torch.equal(ours.model.prompt_learner.ctx, original["ctx"])
    assert torch.equal(ours.model.prompt_learner.ctx_att2, original["ctx_att2"])

    ours.save_model(0, str(tmp_path / "ours"))
    again = build(data_root, tmp_path / "b", "CoOp_ATP", tiny_vit_path)
    again.load_model(str(tmp_path / "ours"), epoch=1)
    image = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours.model_inference(image), again.model_inference(image))


def test_evaluation_uses_the_checkpoint_attributes(tmp_path, data_root, tiny_vit_path):
    trained = build(data_root, tmp_path / "a", "CoOp_ATP", tiny_vit_path, "TRAINER.ATPROMPT.ATTRIBUTES",
                    "['color', 'pattern', 'shape']")
    trained.save_model(0, str(tmp_path / "ckpt"))
    target = build(data_root, tmp_path / "b", "CoOp_ATP", tiny_vit_path)  # Caltech's default: shape, size
    assert [w for w, _ in target.attributes] == ["shape", "size"]
    target.load_model(str(tmp_path / "ckpt"))
    assert [w for w, _ in target.model.prompt_learner.attributes] == ["color", "pattern", "shape"]
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(target.model_inference(image), trained.model_inference(image), atol=1e-5)


def test_checkpoint_that_does_not_fit_is_explained(tmp_path, data_root, tiny_vit_path):
    build(data_root, tmp_path / "a", "CoOp", tiny_vit_path).save_model(0, str(tmp_path / "ckpt"))
    other = build(data_root, tmp_path / "b", "CoOp", tiny_vit_path, "TRAINER.COOP.N_CTX", "4")
    with pytest.raises(UserError, match=r"ckpt.*does not fit the model: .*n_ctx: checkpoint 2, model 4"):
        other.load_model(str(tmp_path / "ckpt"))
    with pytest.raises(UserError, match="does not exist"):
        other.load_model(str(tmp_path / "missing"))
