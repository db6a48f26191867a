"""Faults lose nothing: one run per folder, clean-up of a run's own files only, non-finite numbers caught, resuming
from the newest complete checkpoint, and disk faults explained. Real faults where the machine has them (a second
process, SIGKILL, /dev/full's ENOSPC, a worker killed by a signal, a file where a folder should be); a read-only
file system is a real read-only tmpfs where this process may mount one, else the error such a file system raises."""

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from fake_data import REPO, run_args

import train
from dassl.data import data_manager
from dassl.engine import TrainerBase, run_folder
from dassl.utils import load_checkpoint
from trainers.prompting import PromptLearner

OPTS = ["OPTIM.MAX_EPOCH", "3", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TRAINER.COOP.N_CTX", "2"]


def args(data_root, out, clip, *opts, extra=()):
    return run_args(data_root, out, "CoOp", clip, "CoOp/vit_b16.yaml", *OPTS, *opts, extra=extra)


def main(argv, capsys) -> tuple[int, str, str]:
    code = train.main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != run_folder.LOCK_FILE}


# -- one run per folder ------------------------------------------------------------------------------------------
def test_a_second_run_into_a_folder_in_use_stops_and_deletes_nothing(tmp_path, data_root, tiny_vit_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "other-run.txt").write_text("the first run's file")
    holder = subprocess.Popen(  # a real second process holding the folder, as a training run does
        [sys.executable, "-c", "import sys; from dassl.engine.run_folder import RunFolder; f = RunFolder(); "
         # The signal goes around the log's tee, whose file would otherwise be read while half written.
         f"f.open({str(out)!r}); print('held', file=sys.__stdout__, flush=True); sys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = listing(out)
        code, _, err = main(args(data_root, out, tiny_vit_path), capsys)
        assert code == 2 and err.startswith(f"error: --output-dir {out} is in use by another run (pid {holder.pid}")
        assert listing(out) == before  # the other run's log and files are intact
    finally:
        holder.communicate("")
    assert main(args(data_root, out, tiny_vit_path), capsys)[0] == 0  # free again once that run ended


def test_a_failed_start_removes_only_its_own_files(tmp_path, data_root, tiny_vit_path, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("not this run's")
    code, _, err = main(args(tmp_path / "nowhere", shared, tiny_vit_path), capsys)
    assert code == 2 and "folder not found" in err
    assert sorted(p.name for p in shared.iterdir()) == [run_folder.LOCK_FILE, "notes.txt"]

    new = tmp_path / "a" / "b"
    assert main(args(tmp_path / "nowhere", new, tiny_vit_path), capsys)[0] == 2
    assert not (tmp_path / "a").exists()  # the folders it created, and nothing else, are gone


def test_stale_temporary_files_of_a_dead_run_are_removed_and_live_ones_kept(tmp_path, data_root, tiny_vit_path, capsys):
    out = tmp_path / "run"
    (out / "prompt_learner").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / "prompt_learner" / f".model.pth.tar-1.{dead.pid}.deadbeef.tmp"
    stale.write_bytes(b"half a checkpoint")
    # A write in progress: an evaluation in a sub-folder (where AnchorOPT's scripts put it) is saving its record.
    writer = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    live = out / "evaluation" / f".results.json.{writer.pid}.0123abcd.tmp"
    live.parent.mkdir()
    live.write_text("{")
    try:
        assert main(args(data_root, out, tiny_vit_path), capsys)[0] == 0
    finally:
        writer.communicate(b"")
    assert not stale.exists() and live.exists()


# -- numbers that are not numbers ----------------------------------------------------------------------------------
def test_a_diverging_run_stops_with_the_epoch_and_batch_and_reports_no_accuracy(tmp_path, data_root, tiny_vit_path,
                                                                                capsys):
    code, out, err = main(args(data_root, tmp_path / "run", tiny_vit_path, "OPTIM.LR", "1e30",
                               "OPTIM.WARMUP_EPOCH", "-1"), capsys)
    assert code == 2 and "not finite" in err and "at epoch 1, batch" in err and "lower OPTIM.LR" in err
    assert "* accuracy" not in out


def test_non_finite_weights_after_a_step_are_caught(tmp_path, data_root, tiny_vit_path, capsys, monkeypatch):
    step = torch.optim.SGD.step

    def poisoned(self, *a, **k):
        step(self, *a, **k)
        self.param_groups[0]["params"][0].data.fill_(float("inf"))

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    code, out, err = main(args(data_root, tmp_path / "run", tiny_vit_path), capsys)
    assert code == 2 and "learned weight became NaN or inf after the optimiser step at epoch 1, batch 1" in err


def test_a_model_with_non_finite_outputs_reports_no_accuracy(tmp_path, data_root, tiny_vit_path, capsys,
                                                             monkeypatch):
    trained = tmp_path / "trained"
    assert main(args(data_root, trained, tiny_vit_path, "OPTIM.MAX_EPOCH", "1"), capsys)[0] == 0
    checkpoint = trained / "prompt_learner" / "model.pth.tar-1"
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["ctx"].fill_(float("nan"))
    torch.save(state, checkpoint)
    code, out, err = main(args(data_root, tmp_path / "eval", tiny_vit_path, "OPTIM.MAX_EPOCH", "1",
                               extra=["--eval-only", "--model-dir", trained]), capsys)
    assert code == 2 and "not finite (NaN or inf) in batch 1 of the test set, so no accuracy" in err
    assert "* accuracy" not in out


# -- resuming --------------------------------------------------------------------------------------------------
def _start(argv: list) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", *map(str, argv)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_a_killed_run_resumes_from_its_last_epoch(tmp_path, data_root, tiny_vit_path, capsys):
    """SIGKILL (nothing is saved on the way out) once epoch 4 of 6 has begun, with CHECKPOINT_FREQ 0: the rerun starts
    after the epoch of the rolling checkpoint (3, or later if the kill came late), and ends with the weights of an
    uninterrupted run."""
    six = ("OPTIM.MAX_EPOCH", "6")
    reference = tmp_path / "reference"
    assert main(args(data_root, reference, tiny_vit_path, *six), capsys)[0] == 0
    out = tmp_path / "killed"
    process = _start(args(data_root, out, tiny_vit_path, *six))
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if (out / "log.txt").is_file() and "epoch [4/6]" in (out / "log.txt").read_text():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    saved = load_checkpoint(str(out / "prompt_learner" / "model-last.pth.tar"))["epoch"]
    assert 3 <= saved < 6
    code, log, _ = main(args(data_root, out, tiny_vit_path, *six), capsys)
    assert code == 0 and f"Previous epoch: {saved}" in log and "epoch [1/6]" not in log
    def final(run):
        return load_checkpoint(str(run / "prompt_learner" / "model.pth.tar-6"))["state_dict"]["ctx"]

    assert torch.equal(final(out), final(reference))
    assert sorted(os.listdir(out / "prompt_learner")) == ["checkpoint", "model.pth.tar-6"]  # the rolling one is gone


@pytest.mark.parametrize("pointer", ["missing", "damaged", "names-a-truncated-file"])
def test_resume_finds_the_newest_complete_checkpoint(tmp_path, data_root, tiny_vit_path, capsys, pointer):
    out = tmp_path / "run"
    assert main(args(data_root, out, tiny_vit_path, "TRAIN.CHECKPOINT_FREQ", "1", "OPTIM.MAX_EPOCH", "2"),
                capsys)[0] == 0
    folder = out / "prompt_learner"
    (out / "results.json").unlink()  # as if the run had been killed before the end
    (folder / "model.pth.tar-2").rename(folder / "model.pth.tar-2.kept")
    if pointer == "missing":
        (folder / "checkpoint").unlink()
    elif pointer == "damaged":
        (folder / "checkpoint").write_bytes(b"\x00\x13garbage")
    else:
        (folder / "model.pth.tar-2").write_bytes((folder / "model.pth.tar-2.kept").read_bytes()[:100])
    (folder / "model.pth.tar-2.kept").unlink()
    code, log, _ = main(args(data_root, out, tiny_vit_path, "TRAIN.CHECKPOINT_FREQ", "1", "OPTIM.MAX_EPOCH", "2"),
                        capsys)
    assert code == 0 and "resuming from the newest complete checkpoint" in log and "model.pth.tar-1" in log
    assert "Previous epoch: 1" in log


def test_checkpoints_that_cannot_be_read_are_never_overwritten_by_a_fresh_start(tmp_path, data_root, tiny_vit_path,
                                                                                 capsys):
    out = tmp_path / "run"
    assert main(args(data_root, out, tiny_vit_path, "OPTIM.MAX_EPOCH", "1"), capsys)[0] == 0
    folder = out / "prompt_learner"
    (out / "results.json").unlink()  # as if the run had been killed before the end
    (folder / "checkpoint").unlink()
    (folder / "model.pth.tar-1").write_bytes(b"\x00 a damaged file")
    before = listing(folder)
    code, _, err = main(args(data_root, out, tiny_vit_path, "OPTIM.MAX_EPOCH", "1"), capsys)
    assert code == 2 and f"Cannot resume from {folder}: its checkpoints cannot be read (model.pth.tar-1)" in err
    assert listing(folder) == before


# -- disk and file-system faults -----------------------------------------------------------------------------------
def test_a_full_disk_during_a_checkpoint_save_is_one_error_and_keeps_the_previous_one(tmp_path, data_root,
                                                                                     tiny_vit_path, capsys,
                                                                                     monkeypatch):
    """The temporary file of epoch 2's checkpoint is /dev/full, whose writes fail with a real ENOSPC."""
    out = tmp_path / "run"
    (out / "prompt_learner").mkdir(parents=True)
    fixed = uuid.UUID("00000000000000000000000000000000")
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    target = out / "prompt_learner" / f".model.pth.tar-2.{os.getpid()}.{fixed.hex[:8]}.tmp"

    save_model = TrainerBase.save_model

    def full_disk_at_epoch_2(self, epoch, directory, *a, **k):
        if epoch == 1 and not k.get("model_name"):
            os.symlink("/dev/full", target)
        return save_model(self, epoch, directory, *a, **k)

    monkeypatch.setattr(TrainerBase, "save_model", full_disk_at_epoch_2)
    code, _, err = main(args(data_root, out, tiny_vit_path, "TRAIN.CHECKPOINT_FREQ", "1", "OPTIM.MAX_EPOCH", "3"),
                        capsys)
    final = out / "prompt_learner" / "model.pth.tar-2"
    assert code == 2 and "No space left on device" in err and str(final) in err and "Traceback" not in err
    assert err.count("\n") == 1 and "Files saved before are intact" in err
    assert load_checkpoint(str(out / "prompt_learner" / "model.pth.tar-1"))["epoch"] == 1
    assert not target.exists() and not (out / "prompt_learner" / "model.pth.tar-2").exists()


def test_a_full_disk_under_the_log_is_one_error_without_a_crash_in_the_clean_up(tmp_path, data_root,
                                                                               tiny_vit_path, capsys, monkeypatch):
    from dassl.utils import logger

    monkeypatch.setattr(logger, "_log_path", lambda output: str(tmp_path / "log-on-a-full-disk"))
    os.symlink("/dev/full", tmp_path / "log-on-a-full-disk")
    code, _, err = main(args(data_root, tmp_path / "run", tiny_vit_path), capsys)
    assert code == 2 and "No space left on device" in err and "Traceback" not in err


@contextlib.contextmanager
def read_only_folder(path: Path, monkeypatch):
    """A read-only tmpfs at `path` if this process may mount one; otherwise creating anything under `path` fails
    with EROFS, as it would there (permission bits would not do: tests may run as root)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    if not mounted:
        makedirs = os.makedirs

        def refuse(name, *a, **k):
            if str(os.path.abspath(name)).startswith(str(path)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(name))
            return makedirs(name, *a, **k)

        monkeypatch.setattr(run_folder.os, "makedirs", refuse)
    try:
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def test_an_output_folder_that_cannot_be_written_is_one_error(tmp_path, data_root, tiny_vit_path, capsys,
                                                             monkeypatch):
    with read_only_folder(tmp_path / "ro", monkeypatch):
        code, _, err = main(args(data_root, tmp_path / "ro" / "run", tiny_vit_path), capsys)
    assert code == 2 and "cannot create the folder (Read-only file system)" in err and "Traceback" not in err
    (tmp_path / "a-file").write_text("")
    code, _, err = main(args(data_root, tmp_path / "a-file" / "run", tiny_vit_path), capsys)
    assert code == 2 and "cannot create the folder (a file is in the way)" in err


# -- a worker killed from outside, nothing to learn --------------------------------------------------------------
def test_a_killed_loader_worker_is_one_error(tmp_path, data_root, tiny_vit_path, capsys, monkeypatch):
    def killed(self, idx):
        os.kill(os.getpid(), signal.SIGKILL)  # runs in the worker process: it dies as an out-of-memory kill does

    monkeypatch.setattr(data_manager.DatasetWrapper, "__getitem__", killed)
    code, _, err = main(args(data_root, tmp_path / "run", tiny_vit_path, "DATALOADER.NUM_WORKERS", "1"), capsys)
    assert code == 2 and "DataLoader worker (pid" in err and "lower DATALOADER.NUM_WORKERS" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("opts", "message"), [
    (("TRAINER.COOP.N_CTX", "0"), "CoOp has nothing to learn here: no context tokens (N_CTX 0)"),
    (("TRAINER.COOP.N_CTX", "-1"), "N_CTX is -1: the number of context tokens must be 0 or more"),
])  # fmt: skip
def test_a_prompt_without_tokens_is_refused(tmp_path, data_root, tiny_vit_path, capsys, opts, message):
    code, _, err = main(args(data_root, tmp_path / "run", tiny_vit_path, *opts), capsys)
    assert code == 2 and message in err and not (tmp_path / "run").exists()


def test_learner_refuses_a_negative_context_directly(tiny_vit_path):
    from dassl.utils.errors import UserError
    from trainers.backbone import load_clip
    from trainers.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = str(tiny_vit_path)
    with pytest.raises(UserError, match="N_CTX is -2"):
        PromptLearner(load_clip(cfg)[0], ["cat"], -2)
