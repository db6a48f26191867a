"""Every bad input gets one clear message, interrupted runs lose nothing, results are reproducible.

BAD_INPUTS is the table of ways to get train.py's input wrong: each row must end with exit status 2, one `error:`
message naming the input and the fix, no traceback, and no output left behind. docs/RELIABILITY.md describes the
behaviour tested here.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from fake_data import atprompt_switch, make_caltech101
from PIL import Image

import gpt_query
import train
from dassl.data.datasets import Datum
from dassl.data.datasets.fewshot_cache import load_fewshot_cache, save_fewshot_cache
from dassl.engine.records import read_record
from dassl.engine.run_folder import LOCK_FILE
from dassl.utils import close_logger, load_checkpoint, save_checkpoint, write_json
from dassl.utils.errors import UserError
from trainers.base import PromptTrainer
from trainers.layout import PromptLayout
from trainers.prompting import PromptedCLIP

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-reliability-SECRET-0123456789"
TINY = [
    "INPUT.SIZE", "(32, 32)",
    "DATALOADER.NUM_WORKERS", "0",
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "DATALOADER.TEST.BATCH_SIZE", "8",
    "OPTIM.MAX_EPOCH", "2",
    "DATASET.NUM_SHOTS", "2",
    "TRAINER.COOP.N_CTX", "2",
    "TRAINER.ATPROMPT.N_ATT1", "1",
    "TRAINER.ATPROMPT.N_ATT2", "1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_log_tee():
    yield
    close_logger()  # train.main leaves its log tee on sys.stdout after a successful run


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return Path(make_caltech101(str(tmp_path_factory.mktemp("data"))))


def cli(root, out, clip, *opts, trainer: str = "CoOp", dataset: str = "caltech101", flags=()) -> list[str]:
    return [
        "--root", str(root), "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
        "--dataset-config-file", str(REPO / f"configs/datasets/{dataset}.yaml"),
        "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16.yaml"), *map(str, flags),
        *TINY, "MODEL.BACKBONE.NAME", str(clip), *atprompt_switch(trainer), *map(str, opts),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root, tiny_vit_path) -> Path:
    """A finished 2-epoch CoOp run."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert train.main(cli(data_root, out, tiny_vit_path)) == 0
    close_logger()
    return out


def tree(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under `folder`, with each file's size and modification time: equal trees mean nothing changed.
    The run lock is left out: it records the last run that took the folder, whatever that run did."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(folder.rglob("*")) if p.name != LOCK_FILE}


class Context:
    """What a BAD_INPUTS row builds its command line from. Outputs go under `runs`, which the test watches."""

    def __init__(self, tmp: Path, data_root: Path, clip: Path, trained: Path) -> None:
        self.tmp, self.data_root, self.clip, self._trained = tmp, data_root, clip, trained
        self.runs = tmp / "runs"
        self.runs.mkdir()
        self.out = self.runs / "new" / "seed1"  # two missing levels: both must be gone after a failure
        self.marker = tmp / "code-was-executed"  # created by the malicious pickles below if they ever run

    def args(self, *opts, root=None, out=None, **kw) -> list[str]:
        return cli(root or self.data_root, out or self.out, self.clip, *opts, **kw)

    def data(self, mutate: Callable[[Path], None]) -> Path:
        """A copy of the tiny Caltech101 with `mutate` applied to its caltech-101 folder."""
        root = self.tmp / "data"
        shutil.copytree(self.data_root, root)
        shutil.rmtree(root / "caltech-101" / "split_fewshot", ignore_errors=True)
        mutate(root / "caltech-101")
        return root

    def trained(self, name: str = "trained") -> Path:
        """A copy of the finished run, inside the watched `runs` folder."""
        copy = self.runs / name
        if not copy.exists():
            shutil.copytree(self._trained, copy)
        return copy

    def evil_checkpoint(self) -> Path:
        folder = self.runs / "evil"
        (folder / "prompt_learner").mkdir(parents=True)
        torch.save({"state_dict": {}, "epoch": 1, "payload": Exploit(self.marker)},
                   folder / "prompt_learner" / "model.pth.tar-1")
        return folder


class Exploit:
    """A pickle that creates a folder when it is unpickled unsafely."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def edit_split(mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(dataset_dir: Path) -> None:
        path = dataset_dir / "split_zhou_Caltech101.json"
        split = json.loads(path.read_text())
        mutate(split)
        path.write_text(json.dumps(split))

    return apply


def write(relative: str, content: bytes) -> Callable[[Path], None]:
    return lambda dataset_dir: (dataset_dir / relative).write_bytes(content)


def write_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def remove_images(dataset_dir: Path) -> None:
    for name in ("airplane", "face"):
        shutil.rmtree(dataset_dir / "101_ObjectCategories" / name)
        (dataset_dir / "101_ObjectCategories" / name).mkdir()


def pets_images_only(tmp: Path) -> Path:
    (tmp / "pets" / "oxford_pets" / "images").mkdir(parents=True)
    return tmp / "pets"


def corrupt_training_images(dataset_dir: Path) -> None:
    for i in range(4):  # every training image of the class, so that the few-shot draw meets one in epoch 1
        (dataset_dir / "101_ObjectCategories" / "face" / f"image_{i:04d}.jpg").write_bytes(b"not a jpeg")


def sixteen_bit_training_images(dataset_dir: Path) -> None:
    """16-bit grayscale PNGs (under the .jpg names the split lists), which a conversion to 8 bits would clip."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(buffer, format="PNG")
    for i in range(4):
        (dataset_dir / "101_ObjectCategories" / "face" / f"image_{i:04d}.jpg").write_bytes(buffer.getvalue())


def long_classname(split: dict) -> None:
    for part in split.values():
        for entry in part:
            if entry[2] == "airplane":
                entry[2] = "airplane " + "wing " * 80


def evil_fewshot_cache(marker: Path) -> Callable[[Path], None]:
    def apply(dataset_dir: Path) -> None:
        folder = dataset_dir / "split_fewshot"
        folder.mkdir()
        (folder / "shot_2-seed_1.pkl").write_bytes(pickle.dumps({"train": [Exploit(marker)]}))

    return apply


def nan_anchor(tmp: Path) -> Path:
    """An AnchorOPT anchor in the original's format whose values are NaN (a stage-I run that diverged)."""
    path = tmp / "anchor.pth.tar"
    torch.save({"state_dict": {"anchor_ctx_1": torch.full((1, 64), float("nan")).half()}, "epoch": 10}, path)
    return path


def yaml_file(tmp: Path, text: str) -> Path:
    path = tmp / "bad.yaml"
    path.write_text(text)
    return path


def no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def out_of_memory(monkeypatch) -> None:
    def step(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(PromptTrainer, "forward_backward", step)


def diverging_loss(monkeypatch) -> None:
    monkeypatch.setattr(PromptedCLIP, "loss", lambda self, outputs, label: outputs["logits"].sum() * float("nan"))


class Case(NamedTuple):
    """One bad input: how to build the command line, and the fragments its error message must show, in order."""

    id: str
    args: Callable[[Context], list[str]]
    expect: tuple[str, ...]
    patch: Callable | None = None  # sets up a condition the command line cannot (no network, a full GPU)


BAD_INPUTS = [
    # ----- data
    Case("data-root-missing", lambda c: c.args(root=c.tmp / "nowhere"),
         ("Caltech101: folder not found", "nowhere/caltech-101", "Set DATASET.ROOT (--root)")),
    Case("dataset-folder-missing", lambda c: c.args(root=c.data(lambda d: shutil.rmtree(d))),
         ("Caltech101: folder not found", "expected under DATASET.ROOT: caltech-101/")),
    Case("split-file-not-json", lambda c: c.args(root=c.data(write("split_zhou_Caltech101.json", b'{"train": ['))),
         ("split_zhou_Caltech101.json is not valid JSON", "Download it again")),
    Case("split-entry-malformed",
         lambda c: c.args(root=c.data(edit_split(lambda s: s["test"].__setitem__(0, ["x.jpg"])))),
         ("entry 0 of 'test' is ['x.jpg']", "expected [relative_image_path, integer_label, classname]")),
    Case("split-file-and-annotations-missing", lambda c: c.args(root=pets_images_only(c.tmp), dataset="oxford_pets"),
         ("Annotation file not found", "oxford_pets/annotations/trainval.txt", "docs/DATASETS.md")),
    Case("images-missing", lambda c: c.args(root=c.data(remove_images)),
         ("14 of 42 image files are missing", "airplane/image_0", "... and 9 more", "Check DATASET.ROOT")),
    Case("image-corrupt", lambda c: c.args(root=c.data(corrupt_training_images)),
         ("Cannot read image", "face/image_000", "The file is corrupt or not an image; replace it")),
    Case("image-corrupt-in-loader-worker",
         lambda c: c.args("DATALOADER.NUM_WORKERS", "1", root=c.data(corrupt_training_images)),
         ("Cannot read image", "face/image_000", "replace it")),
    Case("image-of-16-bit-values", lambda c: c.args(root=c.data(sixteen_bit_training_images)),
         ("Cannot read image", "face/image_000", "mode I;16 image with values from 40000 to 40000",
          "save it as an 8-bit image")),
    Case("fewshot-cache-executes-code", lambda c: c.args(root=c.data(evil_fewshot_cache(c.marker))),
         ("Refusing to load", "shot_2-seed_1.pkl", "mkdir, which a few-shot cache never contains", "Delete the file")),
    # ----- names, keys and values
    Case("trainer-unknown", lambda c: c.args(trainer="CoOP"), ('Unknown trainer name "CoOP"', 'Did you mean "CoOp"')),
    Case("dataset-unknown", lambda c: c.args("DATASET.NAME", "Caltech"), ('Did you mean "Caltech101"?',)),
    Case("backbone-unknown", lambda c: c.args("MODEL.BACKBONE.NAME", "ViT-B/17"),
         ("CLIP model 'ViT-B/17' is neither a known name nor an existing file", "'ViT-B/16'")),
    Case("config-key-unknown", lambda c: c.args("TRAINER.COOP.NCTX", "4"),
         ("unknown config key TRAINER.COOP.NCTX (on the command line). Did you mean TRAINER.COOP.N_CTX",)),
    Case("config-key-of-the-original-scripts", lambda c: c.args("TRAINER.COOP.USE_ATPROMPT", "True"),
         ("unknown config key TRAINER.COOP.USE_ATPROMPT", "Did you mean TRAINER.ATPROMPT.USE_ATPROMPT")),
    Case("config-key-unknown-in-yaml", lambda c: c.args(flags=["--config-file", yaml_file(c.tmp, "OPTIM:\n  LR_X: 1")]),
         ("unknown config key OPTIM.LR_X (in --config-file", "bad.yaml). Did you mean OPTIM.LR")),
    Case("config-file-missing", lambda c: c.args(flags=["--config-file", c.tmp / "none.yaml"]),
         ("--config-file", "none.yaml: no such file")),
    Case("value-int-for-float", lambda c: c.args("OPTIM.LR", "1"),
         ("config key OPTIM.LR (on the command line) takes a float, not the int 1: write e.g. OPTIM.LR 1.0",)),
    Case("value-word-for-int", lambda c: c.args("OPTIM.MAX_EPOCH", "ten"),
         ("OPTIM.MAX_EPOCH (on the command line) takes an integer, not the str 'ten': write e.g. OPTIM.MAX_EPOCH 2",)),
    Case("value-int-for-bool", lambda c: c.args("TRAINER.COOP.CSC", "1"), ("takes True or False, not the int 1",)),
    Case("value-wrong-type-in-yaml",
         lambda c: c.args(flags=["--config-file", yaml_file(c.tmp, "OPTIM:\n  MAX_EPOCH: 2.5")]),
         ("OPTIM.MAX_EPOCH (in --config-file", "takes an integer, not the float 2.5")),
    Case("value-missing", lambda c: c.args("OPTIM.LR"), ("KEY VALUE pairs, but OPTIM.LR has no value",)),
    Case("flag-after-options", lambda c: c.args("--eval-only", "x"),
         ("--eval-only is a flag but comes after the KEY VALUE config options",)),
    Case("precision-unknown", lambda c: c.args("TRAINER.COOP.PREC", "fp64"),
         ("TRAINER.COOP.PREC must be one of fp16, fp32, amp, bf16, got 'fp64'",)),
    # ----- values out of range: refused before anything runs, with the range in the message
    Case("lr-negative", lambda c: c.args("OPTIM.LR", "-0.1"), ("OPTIM.LR is -0.1: it takes a number above 0",)),
    Case("lr-nan-in-yaml", lambda c: c.args(flags=["--config-file", yaml_file(c.tmp, "OPTIM:\n  LR: .nan")]),
         ("OPTIM.LR is nan: it takes a number above 0",)),
    Case("weight-decay-negative", lambda c: c.args("OPTIM.WEIGHT_DECAY", "-1.0"),
         ("OPTIM.WEIGHT_DECAY is -1.0: it takes a number of at least 0",)),
    Case("adam-beta-of-one-or-more", lambda c: c.args("OPTIM.NAME", "adam", "OPTIM.ADAM_BETA1", "1.5"),
         ("OPTIM.ADAM_BETA1 is 1.5: it takes a number from 0 up to (not including) 1",)),
    Case("gamma-negative", lambda c: c.args("OPTIM.GAMMA", "-1.0"),
         ("OPTIM.GAMMA is -1.0: it takes a number above 0",)),
    Case("warmup-lr-negative", lambda c: c.args("OPTIM.WARMUP_CONS_LR", "-1.0"),
         ("OPTIM.WARMUP_CONS_LR is -1.0: it takes a number of at least 0",)),
    Case("max-epoch-zero", lambda c: c.args("OPTIM.MAX_EPOCH", "0"),
         ("OPTIM.MAX_EPOCH is 0: it takes an integer of at least 1", "evaluate with --eval-only")),
    Case("max-epoch-negative", lambda c: c.args("OPTIM.MAX_EPOCH", "-3"), ("OPTIM.MAX_EPOCH is -3",)),
    Case("train-batch-size-zero", lambda c: c.args("DATALOADER.TRAIN_X.BATCH_SIZE", "0"),
         ("DATALOADER.TRAIN_X.BATCH_SIZE is 0: it takes an integer of at least 1",)),
    Case("test-batch-size-zero", lambda c: c.args("DATALOADER.TEST.BATCH_SIZE", "0", flags=["--eval-only"]),
         ("DATALOADER.TEST.BATCH_SIZE is 0: it takes an integer of at least 1",)),
    Case("loader-workers-negative", lambda c: c.args("DATALOADER.NUM_WORKERS", "-1"),
         ("DATALOADER.NUM_WORKERS is -1: it takes an integer of at least 0",)),
    Case("print-freq-zero", lambda c: c.args("TRAIN.PRINT_FREQ", "0"),
         ("TRAIN.PRINT_FREQ is 0: it takes an integer of at least 1",)),
    Case("num-shots-zero", lambda c: c.args("DATASET.NUM_SHOTS", "0"),
         ("DATASET.NUM_SHOTS is 0: it takes 1 or more images per class, or -1 for all of them",)),
    Case("seed-negative", lambda c: c.args(flags=["--seed", "-2"]),
         ("SEED is -2: it takes -1 (no fixed seed", "or a fixed seed from 0 to 4294967295")),
    Case("seed-beyond-numpy", lambda c: c.args("SEED", str(2**32)), ("SEED is 4294967296", "the largest NumPy takes")),
    # ----- contradictory settings
    Case("dept-trained-on-new-classes", lambda c: c.args("DATASET.SUBSAMPLE_CLASSES", "new", trainer="DePT"),
         ("DePT trains its linear head on base classes", "set DATASET.SUBSAMPLE_CLASSES base")),
    Case("model-dir-without-eval-only", lambda c: c.args(flags=["--model-dir", c.trained()]),
         ("--model-dir and --load-epoch choose the weights to evaluate and need --eval-only",)),
    Case("eval-output-is-the-training-folder",
         lambda c: c.args(out=c.trained(), flags=["--eval-only", "--model-dir", c.trained()]),
         ("is --model-dir", "an evaluation never writes into a training folder")),
    Case("eval-output-holds-checkpoints",
         lambda c: c.args(out=c.trained("other"), flags=["--eval-only", "--model-dir", c.trained()]),
         ("holds the checkpoints of a training run (prompt_learner/)", "choose another --output-dir")),
    Case("finished-run-longer-than-max-epoch", lambda c: c.args("OPTIM.MAX_EPOCH", "1", out=c.trained()),
         ("Cannot resume from", "other settings (OPTIM.MAX_EPOCH: 2 -> 1)", "in a new --output-dir")),
    Case("resume-with-a-longer-schedule", lambda c: c.args("OPTIM.MAX_EPOCH", "4", out=c.trained()),
         ("Cannot resume from", "OPTIM.MAX_EPOCH: 2 -> 4")),
    Case("resume-with-another-lr-and-shots", lambda c: c.args("OPTIM.LR", "0.5", "DATASET.NUM_SHOTS", "1",
                                                             out=c.trained()),
         ("Cannot resume from", "DATASET.NUM_SHOTS: 2 -> 1", "OPTIM.LR: 0.002 -> 0.5")),
    # ----- weights and checkpoints
    Case("clip-weights-missing-offline",
         lambda c: c.args("MODEL.BACKBONE.NAME", "ViT-B/16", "MODEL.BACKBONE.DOWNLOAD_ROOT", c.tmp / "cache"),
         ("Could not download ViT-B-16.pt", "no network", "put it in the cache folder"), no_network),
    Case("clip-weights-corrupt",
         lambda c: c.args("MODEL.BACKBONE.NAME", write_file(c.tmp / "clip.pt", c.clip.read_bytes()[:4000])),
         ("Could not read CLIP checkpoint", "clip.pt", "replace it with an intact copy")),
    Case("checkpoint-folder-missing", lambda c: c.args(flags=["--eval-only", "--model-dir", c.tmp / "none"]),
         ("--model-dir", "none: no such folder")),
    Case("resume-folder-missing", lambda c: c.args(flags=["--resume", c.tmp / "none"]), ("--resume", "no such folder")),
    Case("checkpoint-of-another-trainer",
         lambda c: c.args(trainer="DePT", flags=["--eval-only", "--model-dir", c.trained()]),
         ("no checkpoint folder", "PromptLearner' (it holds ['log.txt', 'prompt_learner', 'results.json'])")),
    Case("checkpoint-epoch-missing",
         lambda c: c.args(flags=["--eval-only", "--model-dir", c.trained(), "--load-epoch", 7]),
         ("model.pth.tar-7", "available: ['checkpoint', 'model.pth.tar-2']")),
    Case("checkpoint-n-ctx-differs-in-eval",
         lambda c: c.args("TRAINER.COOP.N_CTX", "3", flags=["--eval-only", "--model-dir", c.trained()]),
         ("model.pth.tar-2 does not fit the model", "n_ctx: checkpoint 2, model 3", "N_CTX")),
    Case("checkpoint-n-ctx-differs-on-resume", lambda c: c.args("TRAINER.COOP.N_CTX", "3", out=c.trained()),
         ("Cannot resume from", "model.pth.tar-2", "TRAINER.COOP.N_CTX: 2 -> 3", "in a new --output-dir")),
    Case("checkpoint-attributes-differ-on-resume",
         lambda c: c.args("TRAINER.ATPROMPT.USE_ATPROMPT", "True", out=c.trained()),
         ("Cannot resume from", "TRAINER.ATPROMPT.USE_ATPROMPT: False -> True")),
    Case("checkpoint-executes-code", lambda c: c.args(flags=["--eval-only", "--model-dir", c.evil_checkpoint()]),
         ("Refusing to load", "mkdir, which is not allowed", "re-save it with tensors only")),
    # ----- prompts longer than CLIP's context
    Case("attribute-words-too-long",
         lambda c: c.args("TRAINER.ATPROMPT.USE_ATPROMPT", "True", "TRAINER.ATPROMPT.ATTRIBUTES",
                          repr(["very long words " * 25])),
         ("the prompt for class 'airplane' needs", "more than CLIP's context of 77", "fewer or shorter attribute")),
    Case("class-name-too-long", lambda c: c.args(root=c.data(edit_split(long_classname))),
         ("the prompt for class 'airplane wing wing", "more than CLIP's context of 77", "a shorter class name")),
    Case("class-name-too-long-zero-shot",
         lambda c: c.args(root=c.data(edit_split(long_classname)), trainer="ZeroshotCLIP", flags=["--eval-only"]),
         ("the prompt 'a photo of a airplane wing wing", "more than CLIP's context of 77", "a shorter class name")),
    Case("anchor-not-finite",
         lambda c: c.args("TRAINER.ANCHOROPT.USE_ANCHOROPT", "True", "TRAINER.ANCHOROPT.N_CTX", "2",
                          "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", nan_anchor(c.tmp)),
         ("the anchor in", "anchor.pth.tar holds values that are not finite (NaN or inf)", "train the anchor again")),
    # ----- resources
    Case("gpu-out-of-memory", lambda c: c.args(),
         ("CUDA out of memory", "TRAIN_X.BATCH_SIZE (now 4)", "TEST.BATCH_SIZE (now 8)", "ATTRIBUTE_SEARCH.CHUNK_SIZE"),
         out_of_memory),
    Case("training-diverges", lambda c: c.args(), ("The loss is [nan] (not finite)", "lower OPTIM.LR"), diverging_loss),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.id for case in BAD_INPUTS])
def test_bad_input_gets_one_clear_error(case, tmp_path, data_root, tiny_vit_path, trained, monkeypatch, capsys):
    c = Context(tmp_path, data_root, tiny_vit_path, trained)
    argv = case.args(c)
    if case.patch:
        case.patch(monkeypatch)
    before = tree(c.runs)
    capsys.readouterr()

    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err
    position = 0
    for fragment in case.expect:  # in order
        found = err.find(fragment, position)
        assert found >= 0, f"{fragment!r} not in (the rest of) {err!r}"
        position = found + len(fragment)
    assert tree(c.runs) == before  # no log, folder or checkpoint left behind, nothing overwritten
    assert not c.marker.exists()


def test_command_line_errors_exit_2_without_traceback(tmp_path, tiny_vit_path):
    """The real command: exit status 2, one message on stderr, no output folder."""
    out = tmp_path / "out" / "seed1"
    result = subprocess.run([sys.executable, "train.py", *cli(tmp_path / "nowhere", out, tiny_vit_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: Caltech101: folder not found") and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_bugs_keep_their_traceback_and_debug_shows_it(tmp_path, data_root, tiny_vit_path, monkeypatch, capsys):
    out = tmp_path / "out"

    def shapes_bug(self, outputs, label):
        return torch.zeros(2) @ torch.zeros(3)  # raised inside torch: a bug, not a bad input

    monkeypatch.setattr(PromptedCLIP, "loss", shapes_bug)
    with pytest.raises(RuntimeError, match="size mismatch|inconsistent"):
        train.main(cli(data_root, out, tiny_vit_path))
    assert not out.exists()  # a failed start leaves nothing, bug or not

    with pytest.raises(UserError, match="unknown config key"):
        train.main(cli(data_root, out, tiny_vit_path, "OPTIM.NOPE", "1", flags=["--debug"]))
    monkeypatch.setenv(train.DEBUG_ENV, "1")
    with pytest.raises(UserError, match="folder not found"):
        train.main(cli(tmp_path / "nowhere", out, tiny_vit_path))


def test_ctrl_c_before_training_leaves_nothing(tmp_path, data_root, tiny_vit_path, monkeypatch, capsys):
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(PromptTrainer, "build_model", interrupted)
    out = tmp_path / "out" / "seed1"
    assert train.main(cli(data_root, out, tiny_vit_path)) == 130
    assert "Interrupted" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_missing_split_file_is_made_again_with_a_note(tmp_path, data_root, tiny_vit_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    (root / "caltech-101" / "split_zhou_Caltech101.json").unlink()
    assert train.main(cli(root, tmp_path / "out", tiny_vit_path, "OPTIM.MAX_EPOCH", "1")) == 0
    assert "not found; making a new split from the raw data. It differs from the published split" in (
        capsys.readouterr().out)
    split = json.loads((root / "caltech-101" / "split_zhou_Caltech101.json").read_text())
    assert all(split[k] for k in ("train", "val", "test"))


# ----- nothing lost ---------------------------------------------------------------------------------------------
def _partial_then(failure: BaseException):
    """A low-level writer that writes a few bytes, then fails as a full disk or a Ctrl-C would."""

    def fail(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):  # torch.save(obj, path)
            with open(f, "wb") as target:
                target.write(b"partial")
        else:  # json.dump(obj, text_file), torch.save(obj, buffer)
            f.write(b"partial" if isinstance(f, io.BytesIO) else "partial")
            f.flush()
        raise failure

    return fail


def _checkpoint(folder: Path, value: float) -> None:
    save_checkpoint({"state_dict": {"w": torch.full((3,), value)}, "epoch": 1}, str(folder))


def _read_checkpoint(folder: Path) -> float:
    pointer = (folder / "checkpoint").read_text().strip()
    return load_checkpoint(str(folder / pointer))["state_dict"]["w"][0].item()


def _fewshot(folder: Path, value: float) -> None:
    save_fewshot_cache(str(folder / "split_fewshot" / "shot_1-seed_1.json"),
                       {"train": [Datum(impath=str(folder / "a.jpg"), label=int(value))]})


def _read_fewshot(folder: Path) -> float:
    return load_fewshot_cache(str(folder / "split_fewshot" / "shot_1-seed_1.json"))["train"][0].label


def _split(folder: Path, value: float) -> None:
    write_json({"train": [["a.jpg", int(value), "a"]], "val": [], "test": []}, str(folder / "split.json"))


def _read_split(folder: Path) -> float:
    return json.loads((folder / "split.json").read_text())["train"][0][1]


WRITERS = {  # name: (write(folder, value), read(folder) -> value, the low-level call that fails)
    "checkpoint": (_checkpoint, _read_checkpoint, (torch, "save")),
    "fewshot-cache": (_fewshot, _read_fewshot, (json, "dump")),
    "split-file": (_split, _read_split, (json, "dump")),
}
FAILURES = {"disk-full": OSError(errno.ENOSPC, "No space left on device"), "ctrl-c": KeyboardInterrupt()}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
def test_a_failed_save_keeps_the_previous_file(writer, failure, tmp_path, monkeypatch, capsys):
    write, read, (module, name) = WRITERS[writer]
    write(tmp_path, 1.0)
    before = tree(tmp_path)
    monkeypatch.setattr(module, name, _partial_then(FAILURES[failure]))
    with pytest.raises(type(FAILURES[failure])):
        write(tmp_path, 2.0)
    monkeypatch.undo()
    assert tree(tmp_path) == before and read(tmp_path) == 1.0  # no temporary file left, the old one intact


def test_rerunning_a_finished_run_reuses_it_without_overwriting(tmp_path, trained, data_root, tiny_vit_path,
                                                                capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = tree(run)
    assert train.main(cli(data_root, run, tiny_vit_path)) == 0  # the command that trained it
    out = capsys.readouterr().out
    assert "holds a finished run (2 of 2 epochs): it is reused without training, only the final model is tested " \
           "again; no checkpoint or log is overwritten" in out
    assert "* accuracy:" in out and "epoch [" not in out
    after = tree(run)
    # Every earlier file is untouched but the record, which now describes the new test of the same run.
    assert {k: v for k, v in after.items() if k in before and k != "results.json"} == {
        k: v for k, v in before.items() if k != "results.json"}
    assert [k for k in after if k not in before] == [next(k for k in after if k.startswith("log.txt-"))]
    assert read_record(str(run))["fingerprint"] == read_record(str(trained))["fingerprint"]


def test_evaluating_twice_keeps_both_logs(tmp_path, trained, data_root, tiny_vit_path, capsys):
    out, model = tmp_path / "eval", tree(trained)
    for _ in range(2):
        assert train.main(cli(data_root, out, tiny_vit_path, flags=["--eval-only", "--model-dir", trained])) == 0
        close_logger()
    logs = sorted(p.name for p in out.glob("log.txt*"))
    assert logs[0] == "log.txt" and logs[1].startswith("log.txt-") and len(logs) == 2
    assert all("* accuracy:" in (out / name).read_text() for name in logs)
    assert tree(trained) == model  # nothing written into the training folder


# ----- interrupt and resume -------------------------------------------------------------------------------------
RESUME_OPTS = ("OPTIM.MAX_EPOCH", "10", "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "TRAIN.PRINT_FREQ", "1")


def _start(command: list[str]) -> subprocess.Popen:
    env = dict(os.environ, OPENAI_API_KEY=SECRET, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "train.py", *command], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _signal_once_training(process: subprocess.Popen, log: Callable[[], Path | None], signum: int) -> None:
    """Send `signum` once the run's log shows a trained batch."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        path = log()
        if path is not None and "epoch [" in path.read_text():
            process.send_signal(signum)
            return
        time.sleep(0.01)
    raise AssertionError(f"the run never started training: {process.communicate()}")


def test_sigint_then_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, data_root, tiny_vit_path, capsys):
    """Ctrl-C, rerun, SIGTERM, rerun: the final weights equal an uninterrupted run's (CPU, NUM_WORKERS 0)."""
    reference = tmp_path / "reference"
    assert train.main(cli(data_root, reference, tiny_vit_path, *RESUME_OPTS, trainer="CoOp_ATP")) == 0
    close_logger()

    out = tmp_path / "interrupted"
    command = cli(data_root, out, tiny_vit_path, *RESUME_OPTS, trainer="CoOp_ATP")
    texts = []
    for signum, log in [(signal.SIGINT, lambda: out / "log.txt" if (out / "log.txt").exists() else None),
                        (signal.SIGTERM, lambda: next(iter(out.glob("log.txt-*")), None))]:
        process = _start(command)
        _signal_once_training(process, log, signum)
        stdout, stderr = process.communicate(timeout=120)
        texts += [stdout, stderr]
        assert process.returncode == 128 + signum, stderr
        assert "Interrupted; rerun the same command to resume" in stdout and "Traceback" not in stderr
        pointer = (out / "prompt_learner" / "checkpoint").read_text().strip()
        assert pointer == "model-interrupted.pth.tar" or pointer.startswith("model.pth.tar-")
    assert "Found checkpoint at" in texts[2] and "Finish training" not in texts[2]

    final = subprocess.run([sys.executable, "train.py", *command], cwd=REPO, capture_output=True, text=True,
                           env=dict(os.environ, OPENAI_API_KEY=SECRET, OMP_NUM_THREADS="1"), timeout=120)
    assert final.returncode == 0, final.stderr
    assert "Found checkpoint at" in final.stdout and "Finish training" in final.stdout
    assert not (out / "prompt_learner" / "model-interrupted.pth.tar").exists()

    ours = load_checkpoint(str(out / "prompt_learner" / "model.pth.tar-10"))["state_dict"]
    theirs = load_checkpoint(str(reference / "prompt_learner" / "model.pth.tar-10"))["state_dict"]
    for key in ("ctx", "ctx_att1", "ctx_att2"):
        assert torch.equal(ours[key], theirs[key]), key
    accuracy = [line for line in final.stdout.splitlines() if line.startswith("* accuracy")]
    assert accuracy and accuracy == [line for line in (reference / "log.txt").read_text().splitlines()
                                     if line.startswith("* accuracy")]

    logs = "".join(texts) + final.stdout + final.stderr + "".join(p.read_text() for p in out.glob("log.txt*"))
    assert SECRET not in logs  # API keys in the environment are never printed or logged


# ----- reproducible and safe ------------------------------------------------------------------------------------
def test_same_seed_same_result_other_seed_other_result(tmp_path, data_root, tiny_vit_path, capsys):
    def run(name: str, seed: str) -> tuple[dict, list[str]]:
        args = cli(data_root, tmp_path / name, tiny_vit_path, trainer="CoOp_ATP")
        args[args.index("--seed") + 1] = seed
        assert train.main(args) == 0
        close_logger()
        log = (tmp_path / name / "log.txt").read_text().splitlines()
        weights = load_checkpoint(str(tmp_path / name / "prompt_learner" / "model.pth.tar-2"))["state_dict"]
        # The losses batch by batch (without the timings) and the accuracy.
        return weights, [re.sub(r"time .* (loss .* lr \S+) eta.*", r"\1", line) for line in log
                         if line.startswith(("* accuracy", "epoch ["))]

    first, second, other = run("a", "1"), run("b", "1"), run("c", "2")
    assert len(first[1]) == 7 and first[1] == second[1] and first[1] != other[1]
    for key in ("ctx", "ctx_att1", "ctx_att2"):
        assert torch.equal(first[0][key], second[0][key]) and not torch.equal(first[0][key], other[0][key])


def _trained_with_seed(tmp_path: Path, name: str, data_root, clip, seed: str) -> dict:
    args = cli(data_root, tmp_path / name, clip, trainer="CoOp_ATP")
    args[args.index("--seed") + 1] = seed
    assert train.main(args) == 0
    close_logger()
    return load_checkpoint(str(tmp_path / name / "prompt_learner" / "model.pth.tar-2"))["state_dict"]


@pytest.mark.parametrize("seed", ["0", str(2**32 - 1)])
def test_every_seed_the_engine_accepts_repeats_its_numbers(tmp_path, data_root, tiny_vit_path, capsys, seed):
    """The ends of the range: 0 (which the original ignored) and the largest seed NumPy takes."""
    first = _trained_with_seed(tmp_path, "a", data_root, tiny_vit_path, seed)
    second = _trained_with_seed(tmp_path, "b", data_root, tiny_vit_path, seed)
    assert all(torch.equal(first[key], second[key]) for key in ("ctx", "ctx_att1", "ctx_att2"))
    assert read_record(str(tmp_path / "a"))["fingerprint"] == read_record(str(tmp_path / "b"))["fingerprint"]


def test_a_run_without_a_fixed_seed_claims_no_repeatable_fingerprint(tmp_path, data_root, tiny_vit_path, capsys):
    for name in ("a", "b"):
        _trained_with_seed(tmp_path, name, data_root, tiny_vit_path, "-1")
        assert "Note: SEED is -1 (no fixed seed): this run's numbers cannot be repeated" in capsys.readouterr().out
    first, second = read_record(str(tmp_path / "a")), read_record(str(tmp_path / "b"))
    assert first["seed"] == second["seed"] == -1 and first["fingerprint"] != second["fingerprint"]


def test_checkpoints_load_with_weights_only(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw.get("weights_only")) or real_load(*a, **kw))
    _checkpoint(tmp_path, 1.0)
    assert _read_checkpoint(tmp_path) == 1.0 and calls == [True]

    marker = tmp_path / "executed"
    torch.save({"state_dict": {}, "payload": Exploit(marker)}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="Refusing to load"):
        load_checkpoint(str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_api_keys_are_never_printed(tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    code = gpt_query.main(["--classes", "cat", "dog", "--base-url", f"http://127.0.0.1:{port}/v1", "--retries", "0",
                           "--output", str(tmp_path / "a.json")])
    captured = capsys.readouterr()
    assert code == 2 and "cannot connect" in captured.err
    assert SECRET not in captured.out + captured.err and not (tmp_path / "a.json").exists()
    assert SECRET not in gpt_query.redact(f"bad key {SECRET} or {SECRET[:7]}****{SECRET[-4:]}", SECRET)
    assert SECRET[-4:] not in gpt_query.redact(f"key {SECRET[:7]}****{SECRET[-4:]}", SECRET)


def test_prompt_layout_names_a_class_that_does_not_fit():
    with pytest.raises(UserError, match=r"the prompt for class 'a( a)+' needs \d+ tokens, more than CLIP's context"):
        PromptLayout(["cat", "a" + " a" * 80], n_ctx=4)
