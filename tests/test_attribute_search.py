"""The attribute search (trainers/attribute_search.py): candidates, batched text encoding, the search end to end."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fake_data import build_from, run_args
from tiny_clip import make_tiny_clip

import train
from dassl.utils import load_checkpoint
from dassl.utils.errors import UserError
from trainers.attribute_search import (
    AttributeSearch,
    AttributeSearchCLIP,
    CandidatePrompts,
    candidate_subsets,
    search_bases,
    training_overrides,
)
from trainers.config import get_cfg

REPO = Path(__file__).resolve().parents[1]
OPTS = [  # on top of fake_data.TINY_RUN
    "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
    "DATALOADER.TEST.BATCH_SIZE", "2",
    "OPTIM.MAX_EPOCH", "2",
    "DATASET.SUBSAMPLE_CLASSES", "base",
    "TRAINER.COOP.N_CTX", "2",
    "TRAINER.COOP.N_ATT1", "2",
]  # fmt: skip
THREE_BASES = ["TRAINER.ATTRIBUTE_SEARCH.BASES", "['color', 'playfulness', 'size']"]


def args(data_root, out, clip_path, *opts, trainer="AttributeCompute"):
    return run_args(data_root, out, trainer, clip_path, "CoOp/vit_b16.yaml", *OPTS, *opts)


def build(data_root, out, clip_path, *opts):
    return build_from(args(data_root, out, clip_path, *opts, trainer="AttributeSearch"))


# -- candidates -------------------------------------------------------------------------------------------------
def test_candidates_are_every_subset_in_base_order():
    bases = ["shape", "color", "material", "function", "size"]
    every = candidate_subsets(bases)
    assert len(every) == 31 and len(set(every)) == 31
    assert every[:5] == [(w,) for w in bases] and every[5] == ("shape", "color") and every[-1] == tuple(bases)
    assert all(list(c) == sorted(c, key=bases.index) for c in every)
    assert [len(c) for c in every] == sorted(len(c) for c in every)

    original = candidate_subsets(bases, min_size=3)  # what the original code searched
    assert len(original) == 16 and {len(c) for c in original} == {3, 4, 5}
    assert candidate_subsets(bases, 1, 2) == every[:15]
    for low, high in [(0, -1), (3, 2), (1, 6)]:
        with pytest.raises(UserError, match="MIN_SIZE"):
            candidate_subsets(bases, low, high)


def test_training_overrides():
    assert training_overrides(["color", "shape"]) == (
        "TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.ATTRIBUTES \"['color', 'shape']\""
    )


# -- batched text encoding --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search_model():
    torch.manual_seed(0)
    clip_model = make_tiny_clip("vit")
    candidates = candidate_subsets(["color", "playfulness", "size"])  # "playfulness" is two BPE tokens
    prompts = CandidatePrompts(clip_model, ["sea lion", "car side", "face"], candidates, n_ctx=2, n_att=2)
    return AttributeSearchCLIP(clip_model, prompts)


def features_and_grads(model, batched, chunk_size=0):
    model.chunk_size = chunk_size
    model.zero_grad()
    features = model.use_plain_computation(not batched).text_features()
    model.use_plain_computation(False)
    weights = torch.linspace(-1, 1, features.numel()).reshape(features.shape)
    (features * weights).sum().backward()
    grads = [p.grad.clone() for p in model.prompt_learner.learners.parameters()]
    return features.detach(), grads


def test_batched_text_encoding_equals_one_call_per_candidate(search_model):
    lengths = {learner.layout.seq_len for learner in search_model.prompt_learner.learners}
    assert len(lengths) > 1  # candidates of different lengths share the padded batch
    reference, reference_grads = features_and_grads(search_model, batched=False)
    assert reference.shape == (7, 3, 32)
    search_model._token_budget = 60  # automatic chunking with a tiny budget: several chunks
    for chunk_size in (0, 4, -1):  # all at once; chunks of 4 rows, across candidates; automatic
        features, grads = features_and_grads(search_model, batched=True, chunk_size=chunk_size)
        assert torch.allclose(features, reference, atol=1e-5)
        for grad, expected in zip(grads, reference_grads):
            assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-5)
    groups, memory_bound = search_model._groups()
    assert memory_bound and len(groups) > 1


def test_mixture_is_the_weighted_sum_of_candidate_logits(search_model):
    image = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = search_model(image)
        image_features = search_model.image_features(image)
        text_features = search_model.use_plain_computation().text_features()
        search_model.use_plain_computation(False)
        weights = search_model.prompt_learner.alpha.softmax(dim=0)
        per_candidate = search_model.logit_scale.exp() * torch.einsum("be,gce->gbc", image_features, text_features)
    assert torch.allclose(logits, torch.einsum("g,gbc->bc", weights, per_candidate), atol=1e-4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = search_model(image)
    assert low.dtype == torch.float32 and torch.allclose(low, logits, atol=0.5)


# -- the trainer ------------------------------------------------------------------------------------------------
def test_search_end_to_end(tmp_path, data_root, tiny_vit_path):
    out = tmp_path / "search"
    assert train.main(args(data_root, out, tiny_vit_path)) == 0
    result = json.loads((out / "attribute_search.json").read_text())
    assert result["bases"] == ["shape", "color", "material", "function", "size"]  # Caltech101's from the paper
    assert len(result["candidates"]) == 31 and result["epochs"] == [0, 1, 2]
    alpha = torch.tensor(result["alpha"])
    assert alpha.shape == (3, 31) and not torch.equal(alpha[0], alpha[-1])
    final = torch.tensor(result["confidence"][-1])
    assert torch.allclose(final, alpha[-1].softmax(dim=0)) and torch.isclose(final.sum(), torch.tensor(1.0))
    assert result["chosen"] == result["candidates"][int(final.argmax())] == result["ranking"][0]["attributes"]
    confidences = [r["confidence"] for r in result["ranking"]]
    assert confidences == sorted(confidences, reverse=True) and len(confidences) == 31
    assert (out / "attribute_search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    log = (out / "log.txt").read_text()
    best = result["ranking"][0]
    assert f"words: {tuple(best['attributes'])}, conf: {best['confidence']:.3f}" in log
    assert log.count("words: (") == 2 * 31 and "loss_train" in log and "loss_val" in log
    assert training_overrides(result["chosen"]) in log and "Finish training" in log and "* accuracy:" in log

    checkpoint = load_checkpoint(str(out / "prompt_learner" / "model.pth.tar-2"))
    assert torch.allclose(checkpoint["state_dict"]["alpha"], alpha[-1])
    largest = [len(c) for c in result["candidates"]].index(5)  # the candidates are shuffled, as the original's
    assert f"learners.{largest}.ctx_att5" in checkpoint["state_dict"]

    evaluator = build(data_root, tmp_path / "eval", tiny_vit_path)
    assert not torch.allclose(evaluator.model.prompt_learner.alpha, alpha[-1])
    evaluator.load_model(str(out))
    assert torch.allclose(evaluator.model.prompt_learner.alpha, alpha[-1])

    # Another MAX_EPOCH (another cosine schedule) cannot continue this run.
    assert train.main(args(data_root, out, tiny_vit_path, "OPTIM.MAX_EPOCH", "3")) == 2


def test_a_stopped_search_resumes_with_its_history(tmp_path, data_root, tiny_vit_path, monkeypatch):
    """Stopped after epoch 1 of 2 and run again: the history so far and alpha's optimiser come from the checkpoint,
    and the result is that of an uninterrupted search."""
    whole = tmp_path / "whole"
    assert train.main(args(data_root, whole, tiny_vit_path)) == 0
    expected = json.loads((whole / "attribute_search.json").read_text())

    after_epoch = AttributeSearch.after_epoch

    def stop_after_the_first(self):
        after_epoch(self)
        if self.epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "stopped"
    monkeypatch.setattr(AttributeSearch, "after_epoch", stop_after_the_first)
    with pytest.raises(SystemExit):
        train.main(args(data_root, out, tiny_vit_path))
    monkeypatch.setattr(AttributeSearch, "after_epoch", after_epoch)
    assert train.main(args(data_root, out, tiny_vit_path)) == 0
    resumed = json.loads((out / "attribute_search.json").read_text())
    assert resumed["epochs"] == [0, 1, 2] and resumed["alpha"] == expected["alpha"]
    assert any("Found checkpoint" in f.read_text() for f in out.glob("log.txt*"))


def test_planted_candidate_wins(tmp_path, data_root, tiny_vit_path, monkeypatch):
    """Only one candidate's text features match the labels; the others name the wrong classes."""
    trainer = build(data_root, tmp_path / "planted", tiny_vit_path, *THREE_BASES, "OPTIM.MAX_EPOCH", "3",
                    "TRAINER.ATTRIBUTE_SEARCH.ALPHA_LR", "0.3")
    model = trainer.model
    n_cls, n_cand = trainer.num_classes, len(trainer.candidates)
    with torch.no_grad():
        features, labels = zip(*[(model.image_features(x), y) for x, y in map(trainer.parse_batch_test,
                                                                               trainer.val_loader)])
        features, labels = torch.cat(features), torch.cat(labels)
        prototypes = torch.stack([features[labels == c].mean(0) for c in range(n_cls)])
        prototypes = F.normalize(prototypes - prototypes.mean(0), dim=-1)
    planted = int(model.prompt_learner.alpha.argmin())  # it has to climb from last place
    fake = torch.stack([prototypes if g == planted else prototypes.roll(1 + g % (n_cls - 1), dims=0)
                        for g in range(n_cand)])
    accuracy = (features @ fake.transpose(1, 2)).argmax(-1).eq(labels).float().mean(-1)
    assert accuracy[planted] == 1 and accuracy.max() == accuracy[planted]  # the planted case is as described
    monkeypatch.setattr(model, "text_features", lambda: fake)

    trainer.train()
    result = json.loads((tmp_path / "planted" / "attribute_search.json").read_text())
    assert result["chosen"] == list(trainer.candidates[planted])
    assert int(torch.tensor(result["alpha"][0]).argmin()) == planted


def test_validation_batches_cycle_and_resume_in_place(tmp_path, data_root, tiny_vit_path):
    trainer = build(data_root, tmp_path / "val", tiny_vit_path, *THREE_BASES)
    assert len(trainer.val_loader) == 3  # 3 base classes x 2 images, batches of 2
    images = [trainer.next_val_batch()[0] for _ in range(4)]
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])
    assert torch.equal(images[3], images[0])  # the whole set, then from the start again
    trainer._val_iter = None  # as after a resume: the count says where to continue
    assert torch.equal(trainer.next_val_batch()[0], images[1])


def test_bf16_step_updates_prompts_and_alpha(tmp_path, data_root, tiny_vit_path):
    trainer = build(data_root, tmp_path / "bf16", tiny_vit_path, *THREE_BASES, "TRAINER.ATTRIBUTE_SEARCH.PREC",
                    "bf16", "TRAINER.ATTRIBUTE_SEARCH.MIN_SIZE", "2")
    assert trainer.prec == "bf16" and len(trainer.candidates) == 4
    learners = trainer.model.prompt_learner.learners
    before = [p.detach().clone() for p in learners.parameters()]
    alpha = trainer.model.prompt_learner.alpha.detach().clone()
    trainer.batch_idx, trainer.num_batches = 0, 1
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert set(summary) == {"loss_train", "acc_train", "loss_val", "acc_val"}
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
    assert all(p.dtype == torch.float32 for p in learners.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, learners.parameters()))
    assert not torch.equal(alpha, trainer.model.prompt_learner.alpha)


def test_bases_default_to_the_paper_and_unknown_datasets_are_explained():
    cfg = get_cfg()
    cfg.DATASET.NAME = "OxfordPets"
    assert search_bases(cfg) == ["loyalty", "affection", "playfulness", "energy", "intelligence"]
    cfg.TRAINER.ATTRIBUTE_SEARCH.BASES = ["a", "b", "a"]
    with pytest.raises(UserError, match="repeated"):
        search_bases(cfg)
    cfg.TRAINER.ATTRIBUTE_SEARCH.BASES = []
    cfg.DATASET.NAME = "MyDataset"
    with pytest.raises(UserError, match="TRAINER.ATTRIBUTE_SEARCH.BASES"):
        search_bases(cfg)
