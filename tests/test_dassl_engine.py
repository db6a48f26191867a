"""Trainer lifecycle, checkpoints, exact resume, evaluator output and registry errors of the dassl engine."""

import os
import random
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from dassl.engine.trainer import INTERRUPTED_MODEL_NAME
from dassl.evaluation import build_evaluator
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, set_random_seed
from dassl.utils.errors import UserError


class NoisyPoints(Dataset):
    """Fixed points; in training each access adds noise from torch, NumPy and Python RNGs, like augmentations."""

    def __init__(self, n: int, train: bool):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = torch.arange(n) % 3
        self.train = train

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        if self.train:
            x = x + 0.1 * torch.randn(4) + 0.01 * float(np.random.rand()) + 0.01 * random.random()
        return {"img": x, "label": self.y[i], "domain": 0, "impath": "", "index": i}


@TRAINER_REGISTRY.register()
class ToyTrainer(TrainerX):
    """A linear classifier with dropout; `hook(trainer)` runs after every optimisation step."""

    hook = None

    def build_data_loader(self):
        bs = self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE
        train = NoisyPoints(24, train=True)
        workers = self.cfg.DATALOADER.NUM_WORKERS
        self.train_loader_x = DataLoader(train, batch_size=bs, sampler=RandomSampler(train), drop_last=True,
                                         num_workers=workers,
                                         persistent_workers=workers > 0 and self.cfg.DATALOADER.PERSISTENT_WORKERS)
        test = NoisyPoints(9, train=False)
        self.test_loader = DataLoader(test, batch_size=4, sampler=SequentialSampler(test))
        self.val_loader = self.test_loader
        self.num_classes, self.num_source_domains = 3, 0
        self.lab2cname = {0: "cat", 1: "dog", 2: "fox"}
        self.dm = SimpleNamespace(dataset=None)

    def build_model(self):
        self.model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if self.hook is not None:
            self.hook(self)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}


def toy_cfg(output_dir, **overrides):
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "ToyTrainer"
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.1
    cfg.OPTIM.MAX_EPOCH = 4
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    cfg.TRAIN.PRINT_FREQ = 3
    for key, value in overrides.items():
        node, name = cfg, key
        while "__" in name:
            head, name = name.split("__", 1)
            node = node[head]
        node[name] = value
    return cfg


def run(cfg, hook=None):
    set_random_seed(1)
    trainer = build_trainer(cfg)
    trainer.hook = hook
    trainer.train()
    return trainer


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Final weights of an uninterrupted 4-epoch run."""
    return weights(run(toy_cfg(tmp_path_factory.mktemp("reference"))))


def test_training_log_checkpoint_and_final_test(tmp_path, capsys):
    trainer = run(toy_cfg(tmp_path))
    out = capsys.readouterr().out
    assert "No checkpoint found, train from scratch" in out
    # 6 batches per epoch, PRINT_FREQ 3: lines at batches 3 and 6.
    assert "epoch [1/4] batch [3/6] time " in out and "epoch [4/4] batch [6/6]" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("epoch [2/4] batch [3/6]"))
    fields = line.split(" ")
    assert fields[4] == "time" and fields[7] == "data" and fields[10] == "loss" and fields[13] == "acc"
    assert fields[-4] == "lr" and fields[-2] == "eta" and fields[-1].count(":") == 2
    assert float(fields[-3]) == pytest.approx(0.1)  # epoch 2 runs at the full LR after 1 warmup epoch
    assert "lr 1.0000e-05" in out.split("epoch [2/4]")[0]  # the warmup epoch
    for text in ("Finish training", "Deploy the last-epoch model", "Evaluate on the *test* set", "=> result",
                 "* total: 9", "* accuracy: ", "Elapsed: 0:00:"):
        assert text in out, text
    # Only the last epoch is saved with CHECKPOINT_FREQ 0, plus the pointer file; the rolling checkpoint of the
    # epochs before it is written silently, so the log names the kept one alone.
    folder = tmp_path / "model"
    saved = [line for line in out.splitlines() if "Checkpoint saved" in line]
    assert saved == [f"Checkpoint saved to {folder}/model.pth.tar-4"]
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-4"]
    assert (folder / "checkpoint").read_text().strip() == "model.pth.tar-4"
    ckpt = load_checkpoint(str(folder / "model.pth.tar-4"))
    assert ckpt["epoch"] == 4 and {"state_dict", "optimizer", "scheduler", "val_result"} <= ckpt.keys()
    assert_same_weights(ckpt["state_dict"], weights(trainer))


def test_rerunning_a_finished_run_only_tests(tmp_path, capsys, reference):
    run(toy_cfg(tmp_path))
    capsys.readouterr()
    trainer = run(toy_cfg(tmp_path))
    out = capsys.readouterr().out
    assert "Previous epoch: 4" in out and "epoch [" not in out and "* accuracy: " in out
    assert_same_weights(weights(trainer), reference)


def test_resume_after_crash_matches_uninterrupted_run(tmp_path, capsys, reference):
    def crash(trainer):
        if trainer.epoch == 2 and trainer.batch_idx == 1:
            raise RuntimeError("simulated crash")

    cfg = toy_cfg(tmp_path, TRAIN__CHECKPOINT_FREQ=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, hook=crash)
    assert (tmp_path / "model" / "checkpoint").read_text().strip() == "model.pth.tar-2"
    capsys.readouterr()
    resumed = run(cfg)
    out = capsys.readouterr().out
    assert "Previous epoch: 2" in out and "epoch [1/4]" not in out and "epoch [3/4]" in out
    assert_same_weights(weights(resumed), reference)


def signal_at(epoch, batch_idx, signum):
    def hook(trainer):
        if trainer.epoch == epoch and trainer.batch_idx == batch_idx:
            os.kill(os.getpid(), signum)

    return hook


def test_sigint_mid_epoch_saves_and_resume_is_exact(tmp_path, capsys, reference):
    cfg = toy_cfg(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run(cfg, hook=signal_at(1, 2, signal.SIGINT))
    assert exit_info.value.code == 128 + signal.SIGINT
    out = capsys.readouterr().out
    assert "Interrupted; rerun the same command to resume" in out
    assert "epoch [2/4] batch [3/6]" in out and "batch [6/6]" not in out.split("epoch [2/4]")[1]
    folder = tmp_path / "model"
    assert (folder / "checkpoint").read_text().strip() == INTERRUPTED_MODEL_NAME
    ckpt = load_checkpoint(str(folder / INTERRUPTED_MODEL_NAME))
    assert ckpt["epoch"] == 1 and ckpt["resume_state"]["batches_done"] == 3
    # Handlers are restored after train() exits.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    resumed = run(cfg)
    out = capsys.readouterr().out
    assert "Previous epoch: 1" in out and "epoch [2/4] batch [6/6]" in out and "epoch [2/4] batch [3/6]" not in out
    assert_same_weights(weights(resumed), reference)
    # The regular checkpoint replaced the interrupted one.
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-4"]


def test_resume_with_loader_workers_is_exact(tmp_path, capsys):
    """Workers started afresh each epoch (Dassl's, the default) draw their seeds from the checkpointed RNG, so an
    interrupted run resumes to the same weights as an uninterrupted one, augmentation in the workers included."""
    uninterrupted = weights(run(toy_cfg(tmp_path / "reference", DATALOADER__NUM_WORKERS=2)))
    cfg = toy_cfg(tmp_path / "stopped", DATALOADER__NUM_WORKERS=2)
    with pytest.raises(SystemExit):
        run(cfg, hook=signal_at(2, 1, signal.SIGINT))
    assert_same_weights(weights(run(cfg)), uninterrupted)
    assert not torch.equal(weights(run(toy_cfg(tmp_path / "lean")))["0.weight"], uninterrupted["0.weight"])


def test_mid_epoch_resume_refuses_a_changed_loader(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(toy_cfg(tmp_path), hook=signal_at(1, 3, signal.SIGINT))
    with pytest.raises(UserError, match="stopped after batch 4 of epoch 2.*has 2 batches"):
        run(toy_cfg(tmp_path, DATALOADER__TRAIN_X__BATCH_SIZE=12))


def test_sigterm_on_last_batch_stops_at_epoch_end(tmp_path, capsys, reference):
    cfg = toy_cfg(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run(cfg, hook=signal_at(0, 5, signal.SIGTERM))
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert "epoch [2/4]" not in capsys.readouterr().out
    assert (tmp_path / "model" / "checkpoint").read_text().strip() == "model.pth.tar-1"
    assert_same_weights(weights(run(cfg)), reference)


def test_best_val_mode_saves_and_deploys_best(tmp_path, capsys):
    run(toy_cfg(tmp_path, TEST__FINAL_MODEL="best_val", OPTIM__MAX_EPOCH=2))
    out = capsys.readouterr().out
    assert out.count("Evaluate on the *val* set") == 2
    assert "Deploy the model with the best val performance" in out
    assert 'Loading weights to model from "' in out
    best = load_checkpoint(str(tmp_path / "model" / "model-best.pth.tar"))
    assert best["val_result"] is not None and best["epoch"] in (1, 2)


def test_load_model_by_epoch_and_missing_file(tmp_path, capsys):
    trained = run(toy_cfg(tmp_path, OPTIM__MAX_EPOCH=1))
    set_random_seed(2)
    fresh = build_trainer(toy_cfg(tmp_path / "eval"))
    fresh.load_model(str(tmp_path), epoch=1)
    assert_same_weights(weights(fresh), weights(trained))
    assert fresh.test(is_final=True) == trained.test()
    with pytest.raises(UserError, match=r"model-best\.pth\.tar.*model\.pth\.tar-1.*--load-epoch"):
        fresh.load_model(str(tmp_path))


def test_non_finite_loss_raises_clear_error(tmp_path):
    trainer = build_trainer(toy_cfg(tmp_path))
    with pytest.raises(UserError, match="not finite.*OPTIM.LR"):
        trainer.model_backward_and_update(torch.tensor(float("nan"), requires_grad=True))


def test_model_registry_helpers(tmp_path):
    trainer = build_trainer(toy_cfg(tmp_path))
    assert trainer.get_model_names() == ["model"]
    trainer.set_model_mode("eval")
    assert not trainer.model.training
    trainer.set_model_mode("train")
    assert trainer.model.training
    assert trainer.get_current_lr() == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="already registered"):
        trainer.register_model("model", trainer.model)
    with pytest.raises(KeyError, match="registered: \\['model'\\]"):
        trainer.get_model_names("modle")
    trainer.write_scalar("train/loss", 1.0, 0)  # a no-op without tensorboard, never an AttributeError


def test_build_trainer_errors_suggest_names(tmp_path):
    cfg = toy_cfg(tmp_path, TRAINER__NAME="ToyTrainr")
    with pytest.raises(KeyError, match='Unknown trainer name "ToyTrainr". Did you mean "ToyTrainer"'):
        build_trainer(cfg)
    cfg.TRAINER.NAME = ""
    with pytest.raises(UserError, match="TRAINER.NAME is empty.*ToyTrainer"):
        build_trainer(cfg)


def evaluator_cfg(tmp_path, **test_flags):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.VERBOSE = False
    for key, value in test_flags.items():
        cfg.TEST[key] = value
    return cfg


def test_classification_evaluator_output(tmp_path, capsys):
    cfg = evaluator_cfg(tmp_path, PER_CLASS_RESULT=True, COMPUTE_CMAT=True)
    evaluator = build_evaluator(cfg, lab2cname={0: "cat", 1: "dog", 2: "fox"})
    # 1,500 samples: class 0 always right, class 1 right 4 times in 5, class 2 always predicted as 1.
    labels = torch.tensor([0, 1, 1, 1, 1, 1, 2] * 214 + [0, 0])
    preds = labels.clone()
    preds[labels == 2] = 1
    preds[torch.arange(len(labels)) % 7 == 1] = 0
    evaluator.process(F.one_hot(preds[:1000], 3).float(), labels[:1000])
    evaluator.process(F.one_hot(preds[1000:], 3).float(), labels[1000:])
    results = evaluator.evaluate()
    out = capsys.readouterr().out.splitlines()

    correct = int((preds == labels).sum())
    acc = 100 * correct / 1500
    assert out[:6] == [
        "=> result",
        "* total: 1,500",
        f"* correct: {correct:,}",
        f"* accuracy: {acc:.3f}%",
        f"* error: {100 - acc:.2f}%",
        f"* macro_f1: {results['macro_f1']:.2f}%",
    ]
    assert out[6] == "=> per-class result"
    assert out[7] == "* class: 0 (cat)\ttotal: 216\tcorrect: 216\tacc: 100.00%"
    assert out[8] == "* class: 1 (dog)\ttotal: 1,070\tcorrect: 856\tacc: 80.00%"
    assert out[9] == "* class: 2 (fox)\ttotal: 214\tcorrect: 0\tacc: 0.00%"
    assert out[10] == f"* average: {results['perclass_accuracy']:.1f}%"
    assert list(results)[:3] == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == pytest.approx(acc)
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=True)
    assert cmat.shape == (3, 3) and cmat[2, 1] == 1.0 and cmat[0, 0] == 1.0

    evaluator.reset()
    with pytest.raises(UserError, match="no samples"):
        evaluator.evaluate()


def test_macro_f1_uses_only_present_labels(tmp_path, capsys):
    evaluator = build_evaluator(evaluator_cfg(tmp_path))
    # Labels 0 and 1 only, predictions perfect, but scores over 5 classes: macro-F1 is 100, not 40.
    evaluator.process(torch.eye(5)[[0, 1, 1]], torch.tensor([0, 1, 1]))
    assert evaluator.evaluate()["macro_f1"] == pytest.approx(100.0)


def test_compute_accuracy_topk():
    output = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.1, 0.3, 0.6]])
    target = torch.tensor([2, 0, 2, 1])
    top1, top2 = compute_accuracy(output, target, topk=(1, 2))
    assert top1.item() == pytest.approx(50.0) and top2.item() == pytest.approx(100.0)
    assert compute_accuracy((output, None), target)[0].item() == pytest.approx(50.0)


def _write_tiny_image_dataset(root):
    """A 3-class folder of tiny PNGs, registered below as a dataset reader."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        os.makedirs(root / name, exist_ok=True)
        for i in range(4):
            pixels = rng.integers(0, 60, size=(12, 12, 3), dtype=np.uint8)
            pixels[..., c] += 180
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_end_to_end_with_real_data_manager(tmp_path, capsys):
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum

    @DATASET_REGISTRY.register(force=True)
    class TinyColours(DatasetBase):
        def __init__(self, cfg):
            root = cfg.DATASET.ROOT
            items = [Datum(impath=os.path.join(root, name, f"{i}.png"), label=c, classname=name)
                     for c, name in enumerate(["red", "green", "blue"]) for i in range(4)]
            super().__init__(train_x=items, val=items[:3], test=items)

    @TRAINER_REGISTRY.register(force=True)
    class PixelMean(TrainerX):
        def build_model(self):
            self.model = nn.Linear(3, self.num_classes)
            self.optim = build_optimizer(self.model, self.cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
            self.register_model("linear", self.model, self.optim, self.sched)

        def model_inference(self, image):
            return self.model(image.mean(dim=(2, 3)))

        def forward_backward(self, batch):
            image, label, _ = self.parse_batch_train(batch)
            loss = F.cross_entropy(self.model_inference(image), label)
            self.model_backward_and_update(loss)
            if (self.batch_idx + 1) == self.num_batches:
                self.update_lr()
            return {"loss": loss.item()}

    _write_tiny_image_dataset(tmp_path / "data")
    cfg = toy_cfg(tmp_path / "out", TRAINER__NAME="PixelMean", DATASET__NAME="TinyColours",
                  DATASET__ROOT=str(tmp_path / "data"), DATALOADER__NUM_WORKERS=0, INPUT__SIZE=(8, 8),
                  INPUT__TRANSFORMS=("random_flip",), OPTIM__LR=1.0, OPTIM__MAX_EPOCH=8,
                  OPTIM__WARMUP_EPOCH=-1, TEST__FINAL_MODEL="best_val")
    trainer = run(cfg)
    out = capsys.readouterr().out
    assert trainer.num_classes == 3 and trainer.lab2cname == {0: "red", 1: "green", 2: "blue"}
    assert "Evaluate on the *val* set" in out and "* total: 12" in out
    assert trainer.test() == pytest.approx(100.0)  # colour is trivially separable from the mean pixel
    assert os.path.isfile(tmp_path / "out" / "linear" / "model-best.pth.tar")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_and_the_confusion_matrix_are_scikit_learns(seed):
    from sklearn import metrics

    from dassl.evaluation.evaluator import confusion_matrix, macro_f1_score

    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 6, 50), rng.integers(1, 8, 50)  # labels missing on either side
    expected = metrics.f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
    assert macro_f1_score(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(confusion_matrix(y_true, y_pred),
                               metrics.confusion_matrix(y_true, y_pred, normalize="true"), atol=1e-12)

