"""Multi-process training (2 ranks as torchrun starts them, gloo on the CPU) against one process, same global batch."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from fake_data import make_caltech101

import train
from dassl.engine.distributed import rank_slice

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 20


def test_rank_slices_split_every_global_batch():
    order = [7, 3, 11, 0, 5, 9, 1, 8, 2, 10, 4, 6, 12]
    shards = [rank_slice(order, 2, rank, 3) for rank in range(3)]
    assert shards == [[7, 3, 1, 8], [11, 0, 2, 10], [5, 9, 4, 6]]  # steps of 6; the last image is dropped
    assert rank_slice(order, 4, 1, 2) == [5, 9, 1, 8]  # one global batch of 8; the other 5 images are dropped
    assert [rank_slice(order[:3], 4, rank, 2) for rank in range(2)] == [[7], [3]]  # under one global batch


def args(data_root, out, clip_path, batch_size):
    return [
        "--root", data_root, "--seed", "1", "--trainer", "CoOp_ATP", "--output-dir", str(out),
        "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
        "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16.yaml"),
        "INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch_size), "DATALOADER.TEST.BATCH_SIZE", "8",
        "OPTIM.MAX_EPOCH", str(EPOCHS), "TRAIN.PRINT_FREQ", "1", "DATASET.NUM_SHOTS", "2",
        "TRAINER.COOP.N_CTX", "2", "TRAINER.ATPROMPT.N_ATT1", "2", "TRAINER.ATPROMPT.N_ATT2", "2",
        "MODEL.BACKBONE.NAME", str(clip_path), "USE_CUDA", "False", "TRAINER.ATPROMPT.USE_ATPROMPT", "True",
    ]  # fmt: skip


def launch(argv: list[str], logs: Path) -> list[subprocess.Popen]:
    """Start train.py as ranks 0 and 1 of a gloo group, with the environment torchrun gives its workers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logs.mkdir(exist_ok=True)
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        with open(logs / f"out{rank}", "w") as out, open(logs / f"err{rank}", "w") as err:
            procs.append(subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, env=env, stdout=out,
                                          stderr=err))
    return procs


def finish(procs: list[subprocess.Popen], logs: Path) -> tuple[list[int], list[str], str]:
    """Exit statuses, stdout of each rank and the stderr of both (a rank left waiting for a dead one is killed)."""
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outs = [(logs / f"out{rank}").read_text() for rank in range(2)]
    return codes, outs, "".join((logs / f"err{rank}").read_text() for rank in range(2))


def prompts(out: Path) -> dict:
    state = torch.load(out / "prompt_learner" / f"model.pth.tar-{EPOCHS}", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("ctx")}


def test_two_processes_stop_together_resume_and_match_one(tmp_path, tiny_vit_path):
    """2 processes x batch 2 train exactly like 1 process x batch 4, even across a stop signalled to rank 1 only."""
    data_root = make_caltech101(str(tmp_path / "data"))
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert train.main(args(data_root, single, tiny_vit_path, batch_size=4)) == 0

    procs = launch(args(data_root, multi, tiny_vit_path, batch_size=2), tmp_path / "stopped")
    log, deadline = multi / "log.txt", time.monotonic() + 120
    while not (log.is_file() and f"epoch [2/{EPOCHS}]" in log.read_text()):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            break  # a rank failed to start: finish() reports it
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGINT)  # rank 0 must learn of it, stop after the same batch and save
    codes, (out0, out1), err = finish(procs, tmp_path / "stopped")
    assert codes == [128 + signal.SIGINT] * 2, out0[-3000:] + err
    assert "Interrupted; rerun the same command to resume" in out0 and out1 == ""
    assert [p.name for p in multi.glob("log.txt*")] == ["log.txt"]
    assert (multi / "prompt_learner" / "checkpoint").is_file()
    assert not (multi / "prompt_learner" / f"model.pth.tar-{EPOCHS}").exists()

    procs = launch(args(data_root, multi, tiny_vit_path, batch_size=2), tmp_path / "resumed")
    codes, (out0, out1), err = finish(procs, tmp_path / "resumed")
    assert codes == [0, 0], out0[-3000:] + err
    assert "Found checkpoint" in out0 and "Distributed training on 2 processes (gloo)" in out0
    assert out0.count("* accuracy:") == 1 and out1 == ""
    assert len(list(multi.glob("log.txt*"))) == 2  # one log per run, none from rank 1

    expected, got = prompts(single), prompts(multi)
    assert sorted(got) == ["ctx", "ctx_att1", "ctx_att2"]
    for key in expected:
        # Averaging two half-batch gradients rounds differently from one full batch: ~1e-6 after 20 epochs, where a
        # wrong data shard or a missed gradient would differ by orders of magnitude more.
        assert torch.allclose(got[key], expected[key], rtol=1e-5, atol=1e-5), key


def test_a_failed_run_ends_with_its_error_line_under_the_launcher(tmp_path):
    """tools/torchrun.py: torchrun's summary (naming the error), then train.py's one line last, and its status."""
    command = [sys.executable, "tools/torchrun.py", "--standalone", "--nproc_per_node=2", "train.py",
               "--trainer", "NoSuchTrainer", "--output-dir", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith('error: Unknown trainer name "NoSuchTrainer". Available: ')
    assert "Root Cause" in done.stderr and f"traceback : {lines[-1]}" in done.stderr
    assert "Traceback (most recent call last)" not in done.stderr
