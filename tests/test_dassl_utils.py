"""dassl.utils: logging, atomic files, checkpoints, images, meters, registry and seeding."""

import os
import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dassl.config import get_cfg_default
from dassl.engine.resume import capture_rng_state, restore_rng_state
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    Registry,
    atomic_write,
    close_logger,
    collect_env_info,
    listdir_nohidden,
    load_checkpoint,
    load_pretrained_weights,
    mkdir_if_missing,
    read_image,
    read_json,
    save_checkpoint,
    set_random_seed,
    setup_logger,
    write_json,
)
from dassl.utils.errors import UserError


@pytest.fixture
def logger_cleanup():
    yield
    close_logger()


def test_setup_logger_tees_and_never_overwrites(tmp_path, capsys, logger_cleanup):
    first = setup_logger(str(tmp_path))
    print("first run")
    second = setup_logger(str(tmp_path))  # a second call replaces the tee instead of stacking one
    print("second run")
    close_logger()
    print("console only")

    assert first == str(tmp_path / "log.txt")
    assert os.path.basename(second).startswith("log.txt-20") and len(os.path.basename(second)) == len("log.txt-") + 19
    assert (tmp_path / "log.txt").read_text() == "first run\n"
    assert open(second).read() == "second run\n"
    assert capsys.readouterr().out == "first run\nsecond run\nconsole only\n"
    assert setup_logger(None) is None and sys.stdout is not None


def test_setup_logger_accepts_a_file_name(tmp_path, logger_cleanup):
    path = setup_logger(str(tmp_path / "sub" / "train.log"))
    print("hello")
    close_logger()
    assert path.endswith("train.log") and open(path).read() == "hello\n"


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "state.json"
    write_json({"version": 1}, str(target))

    def failing_writer(tmp):
        with open(tmp, "w") as f:
            f.write('{"version": 2, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(target), failing_writer)
    assert read_json(str(target)) == {"version": 1}
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left behind

    atomic_write(str(target), lambda tmp: open(tmp, "w").write("new"))
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError, match="did not create"):
        atomic_write(str(target), lambda tmp: None)


def test_json_round_trip_and_errors(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_json({"train": [["x.jpg", 0, "cat"]]}, str(path))
    assert read_json(str(path)) == {"train": [["x.jpg", 0, "cat"]]}
    with pytest.raises(UserError, match="missing.json"):
        read_json(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json"):
        read_json(str(tmp_path / "bad.json"))


def test_read_image_and_listdir(tmp_path):
    Image.new("L", (5, 4), color=128).save(tmp_path / "gray.png")
    img = read_image(str(tmp_path / "gray.png"))
    assert img.mode == "RGB" and img.size == (5, 4)
    with pytest.raises(UserError, match="nope.png"):
        read_image(str(tmp_path / "nope.png"))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.jpg"):
        read_image(str(tmp_path / "broken.jpg"))
    (tmp_path / ".hidden").write_text("")
    mkdir_if_missing(str(tmp_path / "folder"))
    mkdir_if_missing(str(tmp_path / "folder"))
    assert listdir_nohidden(str(tmp_path), sort=True) == ["broken.jpg", "folder", "gray.png"]


def test_save_checkpoint_layout_and_weights_only_round_trip(tmp_path):
    model = nn.Linear(3, 2)
    state = {"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 7,
             "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(), "val_result": 71.5}
    path = save_checkpoint(state, str(tmp_path), is_best=True)
    assert path == str(tmp_path / "model.pth.tar-7")
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-7\n"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-7"]
    loaded = load_checkpoint(path)
    assert list(loaded["state_dict"]) == ["weight", "bias"]  # "module." stripped
    assert torch.equal(loaded["state_dict"]["weight"], model.weight.detach())
    assert loaded["epoch"] == 7 and loaded["val_result"] == 71.5
    assert torch.equal(load_checkpoint(str(tmp_path / "model-best.pth.tar"))["state_dict"]["bias"], model.bias.detach())

    save_checkpoint({"state_dict": model.state_dict(), "epoch": 8}, str(tmp_path), model_name="named.pth")
    assert (tmp_path / "checkpoint").read_text() == "named.pth\n"


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match="absent.pth"):
        load_checkpoint(str(tmp_path / "absent.pth"))
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="truncated or not a PyTorch file"):
        load_checkpoint(str(tmp_path / "text.pth"))


class _Payload:
    """An object whose unpickling would create a directory: proof that code from the file ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_load_checkpoint_refuses_code_execution(tmp_path):
    marker = str(tmp_path / "marker")
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="Refusing to load.*posix.mkdir"):
        load_checkpoint(str(tmp_path / "evil.pth"))
    assert not os.path.exists(marker)


def test_load_checkpoint_reads_old_dassl_scheduler_objects(tmp_path):
    # Dassl.pytorch's warmup schedulers pickled their successor scheduler (with its optimiser) as an object.
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 2)).sum().backward()
    optimizer.step()
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10.0)
    for _ in range(3):
        optimizer.step()
        successor.step()
    legacy_scheduler = {"successor": successor, "warmup_epoch": 1, "cons_lr": 1e-5, "base_lrs": [0.1],
                        "last_epoch": 1, "_step_count": 2, "_last_lr": successor.get_last_lr()}
    torch.save({"state_dict": model.state_dict(), "epoch": 4, "scheduler": legacy_scheduler}, tmp_path / "old.pth.tar")
    loaded = load_checkpoint(str(tmp_path / "old.pth.tar"))
    assert torch.equal(loaded["state_dict"]["weight"], model.weight.detach())
    assert loaded["scheduler"]["successor"].T_max == 10.0  # kept as inert data
    # ... which a warmup scheduler can still resume from.
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.LR_SCHEDULER, cfg.MAX_EPOCH, cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE = (
        "sgd", 0.1, "cosine", 10, 1, "constant")
    scheduler = build_lr_scheduler(build_optimizer(nn.Linear(2, 2), cfg), cfg)
    scheduler.load_state_dict(loaded["scheduler"])
    assert scheduler.successor.last_epoch == 3 and scheduler.successor.get_last_lr() == successor.get_last_lr()


def test_load_pretrained_weights_copies_matching_keys(tmp_path, capsys):
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # second layer differs in shape
    load_pretrained_weights(target, str(tmp_path / "w.pth"))
    assert torch.equal(target[0].weight, source[0].weight)
    assert not torch.equal(target[1].bias, source[1].bias[:2])
    assert "discarded" in capsys.readouterr().out
    torch.save({"other": torch.zeros(1)}, tmp_path / "none.pth")
    with pytest.raises(UserError, match="No weight .* matches"):
        load_pretrained_weights(target, str(tmp_path / "none.pth"))


def test_meters():
    meter = AverageMeter()
    meter.update(torch.tensor(2.0))
    meter.update(4.0, n=3)
    assert meter.val == 4.0 and meter.avg == pytest.approx(3.5)
    metrics = MetricMeter()
    metrics.update({"loss": 1.0, "acc": 50.0})
    metrics.update({"loss": torch.tensor(3.0), "acc": 100.0})
    assert str(metrics) == "loss 3.0000 (2.0000) acc 100.0000 (75.0000)"
    with pytest.raises(TypeError, match="dict"):
        metrics.update([1.0])


def test_registry_register_alias_and_suggestions():
    registry = Registry("DATASET")

    @registry.register()
    class OxfordPets:
        pass

    registry.register(OxfordPets, name="Pets")
    assert registry.get("Pets") is OxfordPets and "OxfordPets" in registry and len(registry) == 2
    with pytest.raises(KeyError, match='Did you mean "OxfordPets"\\?'):
        registry.get("OxfordPet")
    with pytest.raises(UserError, match="Available: OxfordPets, Pets"):
        registry.get("Caltech101")
    with pytest.raises(KeyError, match="already registered"):
        registry.register(type("OxfordPets", (), {}))


def test_set_random_seed_and_rng_state_capture(tmp_path):
    set_random_seed(5)
    first = (random.random(), float(np.random.rand()), torch.rand(1).item())
    set_random_seed(5)
    state = capture_rng_state()
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first
    random.gauss(0, 1)
    np.random.randn()
    torch.save(state, tmp_path / "rng.pt")
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))  # only tensors, ints and lists inside
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first


def test_collect_env_info_and_config_defaults():
    info = collect_env_info()
    assert f"PyTorch: {torch.__version__}" in info and "CUDA available" in info
    cfg = get_cfg_default()
    assert cfg.OPTIM.SGD_DAMPNING == 0 and cfg.TEST.FINAL_MODEL == "last_step" and cfg.TRAINER.NAME == ""
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and cfg.INPUT.SIZE == (224, 224)
    cfg.TRAINER.COOP = type(cfg)()  # trainers extend the TRAINER node
    assert "COOP" not in get_cfg_default().TRAINER  # every call returns a fresh copy
