"""Classifying images with a trained prompt (trainers/classifier.py, tools/predict.py): rebuilt from the run folder
alone, every method and plug-in scores each test image as its evaluation does, on the classes it was trained on and
on classes it never saw; the CSV; the runs it refuses."""

import csv
import os
import shutil
from pathlib import Path

import pytest
import torch
from fake_data import REPO, build_from, run_args

import train
from dassl.utils.errors import UserError
from tools import predict
from trainers.classifier import load_classifier

CONFIGS = {"CoOp": "CoOp/vit_b16.yaml", "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
           "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "DePT": "DePT/vit_b16_ep10_bs4_lr35.yaml",
           "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv4.yaml"}
OPTS = [  # on top of fake_data.TINY_RUN: one short epoch, small prompts
    "OPTIM.MAX_EPOCH", "1",
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "TRAINER.COOP.N_CTX", "2",
    "TRAINER.COCOOP.N_CTX", "2",
    "TRAINER.MAPLE.PROMPT_DEPTH", "2",
    "TRAINER.ANCHOROPT.N_CTX", "2",
    "TRAINER.ATPROMPT.N_ATT1", "1",
    "TRAINER.ATPROMPT.N_ATT2", "1",
]  # fmt: skip
VARIANTS = ("", "_ATP", "_AnchorOPT")
CASES = [(method, variant) for method in CONFIGS for variant in VARIANTS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root, tiny_vit_path, original_anchor_path):
    """Base-class training runs, trained on first use: (method, variant) -> run folder."""
    root, done = tmp_path_factory.mktemp("runs"), {}

    def run(method: str, variant: str):
        if (method, variant) not in done:
            folder = root / f"{method}{variant}"
            trainer = method + "_ATP" * (variant == "_ATP")
            anchoropt = ["TRAINER.ANCHOROPT.USE_ANCHOROPT", "True", "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS",
                         str(original_anchor_path)] if variant == "_AnchorOPT" else []
            assert train.main(run_args(data_root, folder, trainer, tiny_vit_path, CONFIGS[method], *OPTS, *anchoropt,
                                       "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
            done[method, variant] = folder
        return done[method, variant]

    return run


def images_of(data_root) -> Path:
    return Path(data_root) / "caltech-101" / "101_ObjectCategories"


def evaluation(data_root, run, out, subsample: str):
    """What `train.py --eval-only --model-dir RUN` evaluates on the classes of `subsample`: the trainer with the
    checkpoint loaded, its test images, and its logits of them."""
    argv = ["--eval-only", "--model-dir", str(run), "--output-dir", str(out), "--root", str(data_root),
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/caltech101.yaml"), "DATASET.NUM_SHOTS", "2",
            "DATASET.SUBSAMPLE_CLASSES", subsample, "DATALOADER.NUM_WORKERS", "0"]
    trainer = build_from(argv)
    trainer.load_model(str(run))
    trainer.set_model_mode("eval")
    paths, logits = [], []
    with torch.no_grad():
        for batch in trainer.test_loader:
            paths += batch["impath"]
            logits.append(trainer.model_inference(batch["img"]))
    return trainer, paths, torch.cat(logits)


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_the_classifier_scores_as_the_evaluation_on_seen_and_unseen_classes(tmp_path, data_root, runs, method,
                                                                            variant):
    run = runs(method, variant)
    for subsample in ("base", "new"):  # the classes it was trained on, then classes it never saw
        trainer, paths, expected = evaluation(data_root, run, tmp_path / subsample, subsample)
        names = list(trainer.dm.dataset.classnames)
        classifier = load_classifier(str(run), None if subsample == "base" else names, device="cpu")
        assert classifier.classnames == names
        logits = classifier.logits(paths)
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
        top1 = [label for (label, _), in classifier.top(paths, k=1)]
        assert top1 == [names[i] for i in expected.argmax(dim=1).tolist()]
        # The test rule the classes call for: DePT's head and AnchorOPT's normal branch on trained classes alone.
        if method == "DePT":
            assert classifier.model.base_mode == (subsample == "base")
        if variant == "_AnchorOPT":
            assert classifier.model.seen_classes == (subsample == "base")


def test_probabilities_are_a_softmax_and_images_are_batched(data_root, runs):
    run = runs("CoOp", "_ATP")
    images = sorted(str(p) for p in images_of(data_root).rglob("*.jpg"))[:5]
    one = load_classifier(str(run), device="cpu", batch_size=1)
    many = load_classifier(str(run), device="cpu", batch_size=4)
    probabilities = one.predict(images)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(probabilities, many.predict(images))
    torch.testing.assert_close(probabilities, one.logits(images).softmax(dim=1))


def test_predict_prints_and_writes_the_top_k_as_csv(tmp_path, data_root, runs, capsys):
    run = runs("CoOp", "")
    folder = images_of(data_root) / "leopard"
    single = images_of(data_root) / "face" / "image_0000.jpg"
    output = tmp_path / "preds.csv"
    names = ["leopard", "face", "tabby cat"]
    assert predict.main(["--model-dir", str(run), str(folder), str(single), "--classnames", *names, "--topk", "2",
                         "--output", str(output)]) == 0
    out = capsys.readouterr().out
    with open(output, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "rank", "label", "probability"]
    images = sorted(str(p) for p in folder.glob("*.jpg")) + [str(single)]
    assert [row[0] for row in rows[1::2]] == images and [row[0] for row in rows[2::2]] == images
    assert {row[1] for row in rows[1::2]} == {"1"} and {row[1] for row in rows[2::2]} == {"2"}
    probabilities = load_classifier(str(run), names, device="cpu").predict(images)
    for i, image in enumerate(images):
        first, second = rows[1 + 2 * i], rows[2 + 2 * i]
        top = probabilities[i].topk(2)
        assert [first[2], second[2]] == [names[j] for j in top.indices.tolist()]
        assert [float(first[3]), float(second[3])] == pytest.approx(top.values.tolist(), abs=1e-6)
        assert out.splitlines()[i].startswith(f"{image}: {first[2]} (")  # stdout holds the predictions alone


def test_a_class_names_file_and_the_runs_own_classes(tmp_path, runs, data_root, capsys):
    run = runs("KgCoOp", "")
    image = str(images_of(data_root) / "face" / "image_0000.jpg")
    names_file = tmp_path / "names.txt"
    names_file.write_text("zebra\n\ngiraffe\n")
    assert predict.main(["--model-dir", str(run), image, "--classnames-file", str(names_file), "--topk", "5"]) == 0
    labels = capsys.readouterr().out.split(": ", 1)[1]
    assert labels.startswith(("zebra (", "giraffe (")) and labels.count("%") == 2  # top-5 of two classes: two
    assert load_classifier(str(run), device="cpu").classnames == ["airplane", "face", "leopard"]  # its base classes


def test_the_trained_classes_given_by_name_are_the_trained_ones(runs):
    """DePT's head serves its classes in their order, whatever their spelling in the prompts; in another order they
    are other classes (its rows would not match)."""
    run = runs("DePT", "")
    assert load_classifier(str(run), ["airplane", "face", "leopard"], device="cpu").model.base_mode
    assert not load_classifier(str(run), ["face", "airplane", "leopard"], device="cpu").model.base_mode


def strip_meta(run, tmp_path, *keys):
    """A copy of `run` whose checkpoint lacks `keys` of its record (all of it when none are named)."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    path = next((copy / "prompt_learner").glob("model.pth.tar-*"))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["meta"] = {k: v for k, v in checkpoint["meta"].items() if k not in keys} if keys else None
    torch.save(checkpoint, path)
    return copy


@pytest.mark.parametrize(("case", "message"), [
    ("no-checkpoint", "holds no checkpoint: pass the output folder of a training run"),
    ("no-settings", "records no settings (a checkpoint of the original code"),
    ("no-class-names", "does not name the classes it was trained on"),
    ("repeated-names", "the class names repeat face: give each class once"),
    ("missing-image", "nothing.jpg: no such image file or folder"),
])  # fmt: skip
def test_what_it_cannot_rebuild_is_one_line(tmp_path, data_root, runs, capsys, case, message):
    run, names = runs("CoOp", ""), []
    image = str(images_of(data_root) / "face" / "image_0000.jpg")
    if case == "no-checkpoint":
        run = tmp_path
    elif case == "no-settings":
        run = strip_meta(run, tmp_path)
    elif case == "no-class-names":
        run = strip_meta(run, tmp_path, "classnames")
    elif case == "repeated-names":
        names = ["--classnames", "face", "dog", "face"]
    else:
        image = str(tmp_path / "nothing.jpg")
    assert predict.main(["--model-dir", str(run), image, *names]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and message in err
    if case == "no-class-names":  # given the names, the checkpoint serves
        assert predict.main(["--model-dir", str(run), image, "--classnames", "face", "dog"]) == 0


def test_the_library_refuses_with_a_user_error(tmp_path):
    with pytest.raises(UserError, match="holds no checkpoint"):
        load_classifier(str(tmp_path))
