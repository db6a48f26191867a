"""Trainer lifecycle, compatible with Dassl.pytorch's TrainerBase / SimpleTrainer / TrainerX.

A subclass registers its modules with `register_model`, implements `build_model` and
`forward_backward`, and inherits training, evaluation, logging, checkpointing and resumption.

Resumption is exact on the CPU: checkpoints carry the RNG streams, and a run stopped with
SIGINT/SIGTERM saves its state after the current batch and later continues from that batch
(see `TrainerX.run_epoch`), so the final weights equal those of an uninterrupted run.
"""

import datetime
import os
import os.path as osp
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from yacs.config import CfgNode

from dassl.config.checks import check_node, check_value
from dassl.evaluation import build_evaluator
from dassl.utils import AverageMeter, MetricMeter, load_checkpoint, mkdir_if_missing, save_checkpoint
from dassl.utils.errors import UserError
from dassl.utils.registry import UnknownNameError

from . import distributed
from .resume import StopSignal, capture_rng_state, restore_rng_state

# Written when a run is stopped in the middle of an epoch; removed by the next regular save.
INTERRUPTED_MODEL_NAME = "model-interrupted.pth.tar"
# Written after every epoch that keeps no model.pth.tar-N (TRAIN.CHECKPOINT_FREQ): a killed run resumes from there.
LAST_MODEL_NAME = "model-last.pth.tar"


def newest_checkpoint(folder: str) -> Optional[tuple[str, dict[str, Any]]]:
    """(path, checkpoint) of the newest complete checkpoint in `folder`, or None when there is none.

    The `checkpoint` pointer names it; when the pointer is missing or damaged (a run killed while writing it), or
    names a file that does not load, the newest of the checkpoints that load is taken (by epoch, then batches)."""
    pointer = osp.join(folder, "checkpoint")
    named, failure = None, None
    if osp.isfile(pointer):
        with open(pointer, errors="replace") as f:
            named = osp.join(folder, f.readline().strip())
        try:
            return named, load_checkpoint(named)
        except UserError as err:
            failure = err
    if not osp.isdir(folder):
        return None
    candidates, unreadable = [], []
    for fname in sorted(os.listdir(folder)):
        if fname.startswith("model") and ".pth.tar" in fname:
            try:
                checkpoint = load_checkpoint(osp.join(folder, fname))
            except UserError:
                unreadable.append(fname)
                continue
            done = (checkpoint.get("resume_state") or {}).get("batches_done", 0)
            candidates.append(((checkpoint["epoch"], done), osp.join(folder, fname), checkpoint))
    if not candidates:
        if failure is not None and osp.isfile(named):
            raise failure  # the one checkpoint there cannot be read: say why, rather than train from scratch
        if unreadable:  # training from scratch would overwrite them
            raise UserError(f"Cannot resume from {folder}: its checkpoints cannot be read ({', '.join(unreadable)}). "
                            "Restore them, or move them away to train from scratch.")
        return None
    _, path, checkpoint = max(candidates, key=lambda c: c[0])
    why = "is damaged" if named else "is missing"
    print(f"Note: the checkpoint pointer in {folder} {why}; resuming from the newest complete checkpoint, {path}")
    return path, checkpoint


def check_same_optimizer(optim: torch.optim.Optimizer, saved: dict[str, Any], path: str) -> None:
    """Another optimiser's state (SGD's momentum for Adam, ...) cannot continue a run."""
    mine, theirs = set(optim.state_dict()["param_groups"][0]), set(saved["param_groups"][0])
    if mine != theirs:
        raise UserError(f'Cannot resume from "{path}": it was trained with another optimiser (its settings '
                        f"{sorted(theirs - mine)} are not {type(optim).__name__}'s): rerun with the OPTIM.NAME it was "
                        "trained with, or use a new --output-dir")


def progress_bars_shown() -> bool:
    """Whether progress bars are drawn: on the main process, when stderr is a terminal (stdout may be tee'd into
    log.txt)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) and distributed.is_main_process()


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, (list, tuple)):  # several augmented views (DATALOADER.K_TRANSFORMS > 1)
        return [v.to(device) for v in x]
    return x.to(device)


class TrainerBase:
    """Registry of (model, optimiser, scheduler) triples and the generic train loop."""

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Optional[torch.optim.Optimizer]] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._writer = None
        self._stop: Optional[StopSignal] = None
        self._partial_epoch: Optional[dict] = None  # set by a resume from a mid-epoch checkpoint
        self._epoch_rng: Optional[dict] = None  # RNG state at the start of the current epoch
        self._saved_epoch: Optional[int] = None  # last epoch whose end-of-epoch state was saved
        self.best_result = -np.inf
        self.test_results: dict[str, float] = {}  # the metrics of the last test

    # ----- model registry -------------------------------------------------------------------------

    def register_model(
        self, name: str = "model", model: Optional[nn.Module] = None, optim=None, sched=None
    ) -> None:
        """Register a module (and its optimiser and scheduler) for saving, loading, mode switches and LR steps."""
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot register a model before TrainerBase.__init__() ran (call super().__init__())")
        if name in self._models:
            raise ValueError(f'A model named "{name}" is already registered; registered names must be unique')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: Union[str, list[str], None] = None) -> list[str]:
        registered = list(self._models)
        if names is None:
            return registered
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if name not in registered:
                raise UnknownNameError(f'No model registered as "{name}"; registered: {registered}')
        return names

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        if mode not in ("train", "eval", "test"):
            raise ValueError(f'Unknown model mode "{mode}"; use "train" or "eval"')
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    # ----- optimisation steps ---------------------------------------------------------------------

    def _where(self) -> str:
        return f"epoch {self.__dict__.get('epoch', 0) + 1}, batch {self.__dict__.get('batch_idx', 0) + 1}"

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise UserError(
                f"The loss is {loss.detach().flatten()[:4].tolist()} (not finite) at {self._where()}. Training "
                "diverged: lower OPTIM.LR or use a more stable precision (fp32 or amp instead of fp16)."
            )

    def detect_anomaly_in_parameters(self, params: Iterable[torch.Tensor]) -> None:
        """After an optimiser step: a learned weight that became NaN or inf ends the run before it is saved."""
        if not all(torch.isfinite(p).all() for p in params):
            raise UserError(
                f"A learned weight became NaN or inf after the optimiser step at {self._where()}. Training diverged: "
                "lower OPTIM.LR, or use a more stable precision (fp32 or amp instead of fp16)."
            )

    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    # ----- tensorboard (optional) -----------------------------------------------------------------

    def init_writer(self, log_dir: str) -> None:
        if self._writer is not None or not distributed.is_main_process():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional: without it, scalars are simply not written
            return
        mkdir_if_missing(log_dir)
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value: float, global_step: Optional[int] = None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # ----- checkpoints ----------------------------------------------------------------------------

    def _resume_state(self, batches_done: int) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": capture_rng_state(), "batches_done": batches_done,
                                 "best_result": float(self.best_result)}
        if batches_done:
            state["epoch_rng"] = self._epoch_rng
        scaler = self.__dict__.get("scaler")
        if scaler is not None and hasattr(scaler, "state_dict"):
            state["scaler"] = scaler.state_dict()
        training = self.training_state()
        if training:
            state["training_state"] = training
        return state

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: Optional[float] = None,
        model_name: str = "",
        *,
        batches_done: int = 0,
    ) -> None:
        """Save every registered model as `directory/<name>/model.pth.tar-{epoch + 1}` (or `model_name`).

        `batches_done` > 0 marks a mid-epoch checkpoint: `epoch + 1` epochs are complete and
        `batches_done` batches of the next one.
        """
        resume_state = self._resume_state(batches_done)
        for name in self.get_model_names() if distributed.is_main_process() else ():  # rank 0 alone writes
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self.state_to_save(name),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "resume_state": resume_state,
            }
            meta = self.checkpoint_meta()
            if meta is not None:
                state["meta"] = meta
            save_dir = osp.join(directory, name)
            # The rolling checkpoint is written every epoch and replaced by the next: the log names kept ones only.
            saved = save_checkpoint(state, save_dir, is_best=is_best, model_name=model_name,
                                    announce=model_name != LAST_MODEL_NAME)
            for stale in (INTERRUPTED_MODEL_NAME, LAST_MODEL_NAME):  # the `checkpoint` pointer names a newer file
                path = osp.join(save_dir, stale)
                if not batches_done and path != saved and osp.exists(path):
                    os.remove(path)
        if not batches_done and model_name in ("", None):
            self._saved_epoch = epoch
        distributed.barrier()  # on return the files exist for every process

    def state_to_save(self, name: str) -> dict[str, Any]:
        """The weights of registered model `name` that its checkpoints keep (all of them here)."""
        return self._models[name].state_dict()

    def state_to_resume(self, name: str, saved: dict[str, Any]) -> dict[str, Any]:
        """The full state of registered model `name` from the weights its checkpoint kept (`state_to_save`)."""
        return saved

    def training_state(self) -> dict[str, Any]:
        """Hook: what a trainer accumulates over the epochs besides its models (e.g. a running average of weights),
        saved with every checkpoint so that a resumed run continues it ({}: nothing)."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Hook: take up the `training_state` a checkpoint holds."""

    def checkpoint_meta(self) -> Optional[dict[str, Any]]:
        """What checkpoints record about the run that made them (None: nothing); `check_resumable` reads it."""
        return None

    def check_resumable(self, checkpoint: dict[str, Any], path: str) -> None:
        """Hook: refuse to resume from a checkpoint made with other settings (nothing is checked here)."""

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every registered model, optimiser and scheduler from `directory`; return the start epoch."""
        names = self.get_model_names()
        found = {name: newest_checkpoint(osp.join(directory, name)) for name in names}
        missing = [name for name in names if found[name] is None]
        if len(missing) == len(names):
            print("No checkpoint found, train from scratch")
            return 0
        if missing:
            raise UserError(f"Cannot resume from {directory}: {missing} have no checkpoint while other models do. "
                            "Remove the directory to start over, or restore the missing files.")
        print(f"Found checkpoint at {directory} (will resume training)")
        epochs, resume_state = set(), None
        for name in names:
            fpath, checkpoint = found[name]
            print(f'Loading checkpoint from "{fpath}"')
            self.check_resumable(checkpoint, fpath)
            try:
                self._models[name].load_state_dict(self.state_to_resume(name, checkpoint["state_dict"]))
            except (RuntimeError, ValueError, UserError) as err:
                raise UserError(
                    f'Cannot resume from "{fpath}": it does not fit the model ({err}). It was saved with other '
                    "settings (e.g. N_CTX or the attributes): rerun with those, or use a new --output-dir."
                ) from err
            print("Loaded model weights")
            if self._optims[name] is not None and checkpoint.get("optimizer") is not None:
                check_same_optimizer(self._optims[name], checkpoint["optimizer"], fpath)
                self._optims[name].load_state_dict(checkpoint["optimizer"])
                print("Loaded optimizer")
            if self._scheds[name] is not None and checkpoint.get("scheduler") is not None:
                self._scheds[name].load_state_dict(checkpoint["scheduler"])
                print("Loaded scheduler")
            epochs.add(checkpoint["epoch"])
            resume_state = resume_state or checkpoint.get("resume_state")
        if len(epochs) > 1:
            raise UserError(f"The checkpoints in {directory} are from different epochs {sorted(epochs)}; "
                            "they cannot be resumed together")
        start_epoch = epochs.pop()
        print(f"Previous epoch: {start_epoch}")
        if resume_state:
            self._apply_resume_state(resume_state)
        return start_epoch

    def _apply_resume_state(self, state: dict[str, Any]) -> None:
        restore_rng_state(state["rng"])
        self.best_result = state.get("best_result", self.best_result)
        scaler = self.__dict__.get("scaler")
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        if "training_state" in state:
            self.load_training_state(state["training_state"])
        if state.get("batches_done"):
            self._partial_epoch = state
            print(f"The checkpoint was saved after batch {state['batches_done']} of the next epoch; continuing there")

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load weights saved by `save_model`: `model.pth.tar-{epoch}`, or `model-best.pth.tar` without an epoch."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = f"model.pth.tar-{epoch}" if epoch is not None else "model-best.pth.tar"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                folder = osp.dirname(model_path)
                found = sorted(f for f in os.listdir(folder) if f.startswith("model")) if osp.isdir(folder) else []
                hint = f"available: {found}" if found else "the folder holds no checkpoint"
                if epoch is None:
                    hint += " (pass --load-epoch N; model-best.pth.tar exists only with TEST.FINAL_MODEL best_val)"
                raise UserError(f'No model at "{model_path}"; {hint}')
            checkpoint = load_checkpoint(model_path)
            print(f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint["epoch"]})')
            self._models[name].load_state_dict(checkpoint["state_dict"])

    # ----- lifecycle ------------------------------------------------------------------------------

    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Generic training loop; SIGINT/SIGTERM stop it cleanly with a resumable checkpoint."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        with StopSignal() as self._stop:
            for epoch in range(self.start_epoch, self.max_epoch):
                self.epoch = epoch
                self.before_epoch()
                self.run_epoch()
                self.after_epoch()
                if self.stop_requested():
                    self.stop_training()
        self._stop = None
        self.after_train()

    def stop_requested(self) -> bool:
        """Whether to stop; in a multi-process run, a signal that reached any process stops them all."""
        if self._stop is None:
            return False
        agreed = distributed.agree_on_signal(self._stop.signum)
        if agreed is not None and self._stop.signum is None:  # another process was signalled
            self._stop.signum = agreed
        return agreed is not None

    def stop_training(self, batches_done: int = 0) -> None:
        """Save a resumable checkpoint and exit with status 128 + signal number.

        With `batches_done` == 0 the current epoch is complete and a regular end-of-epoch checkpoint
        is written (unless `after_epoch` just wrote it). Otherwise the state after `batches_done`
        batches of the current epoch goes to INTERRUPTED_MODEL_NAME, with the RNG states needed to
        replay the rest of the epoch exactly.
        """
        if batches_done:
            self.save_model(self.epoch - 1, self.output_dir, model_name=INTERRUPTED_MODEL_NAME,
                            batches_done=batches_done)
        elif self._saved_epoch != self.epoch:
            self.save_model(self.epoch, self.output_dir)
        self.close_writer()
        signum = self._stop.signum
        resume_dir = self.cfg.RESUME if hasattr(self, "cfg") else ""
        if resume_dir and osp.abspath(resume_dir) != osp.abspath(self.output_dir):
            print(f"Interrupted; rerun the same command with --resume {self.output_dir} to resume")
        else:
            print("Interrupted; rerun the same command to resume")
        sys.stdout.flush()
        raise SystemExit(128 + signum)

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self, split: Optional[str] = None, is_final: bool = False) -> float:
        raise NotImplementedError

    def parse_batch_train(self, batch: dict):
        raise NotImplementedError

    def parse_batch_test(self, batch: dict):
        raise NotImplementedError

    def forward_backward(self, batch: dict) -> dict[str, float]:
        raise NotImplementedError

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SimpleTrainer(TrainerBase):
    """A trainer with one config, one data manager, one evaluator and Dassl's epoch bookkeeping."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        check_node(cfg.TRAIN, "TRAIN")
        self.check_cfg(cfg)
        use_cuda = cfg.USE_CUDA and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg: CfgNode) -> None:
        """Hook for trainers to validate their config keys."""

    def build_data_loader(self) -> None:
        from dassl.data import DataManager

        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = getattr(dm, "train_loader_u", None)
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement build_model() and register its models")

    def train(self) -> None:
        check_value("OPTIM.MAX_EPOCH", self.max_epoch)  # a run with no epoch would record the untrained model
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        self.check_finished_run(directory)
        distributed.prepare_training(self._models.values())
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def check_finished_run(self, directory: str) -> None:
        """Re-running a finished run trains no epoch and only tests again (Dassl's behaviour): say so, and refuse
        a run that was trained for more epochs than asked."""
        if self.start_epoch > self.max_epoch:
            raise UserError(
                f"{directory} holds a run trained for {self.start_epoch} epochs, more than OPTIM.MAX_EPOCH = "
                f"{self.max_epoch}: evaluate it with --eval-only, or use a new --output-dir to train "
                f"{self.max_epoch} epochs"
            )
        if self.start_epoch and self.start_epoch == self.max_epoch:
            retest = "" if self.cfg.TEST.NO_TEST else ", only the final model is tested again"
            print(f"{directory} holds a finished run ({self.max_epoch} of {self.max_epoch} epochs): it is reused "
                  f"without training{retest}; no checkpoint or log is overwritten")

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = datetime.timedelta(seconds=round(time.time() - self.time_start))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
        else:  # a small rolling checkpoint, so that a killed run loses one epoch at most
            self.save_model(self.epoch, self.output_dir, model_name=LAST_MODEL_NAME)

    @torch.no_grad()
    def test(self, split: Optional[str] = None, is_final: bool = False) -> float:
        """Evaluate on TEST.SPLIT (or `split`) and return the first metric (accuracy).

        `is_final` is accepted for compatibility with scripts that mark the last evaluation; it only
        flushes the output (the process is not terminated).
        """
        if not distributed.is_main_process():
            return distributed.broadcast_object(None)  # rank 0 evaluates alone and shares the result
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        for index, (output, label) in enumerate(self.evaluation_outputs(data_loader, split)):
            if not torch.isfinite(output).all():
                raise UserError(
                    f"The model's outputs are not finite (NaN or inf) in batch {index + 1} of the {split} set, so no "
                    "accuracy is reported: the weights diverged in training (lower OPTIM.LR, or use a more stable "
                    "precision than fp16) or the checkpoint is damaged."
                )
            self.evaluator.process(output, label)
        results = self.evaluator.evaluate()
        self.test_results = dict(results)
        for key, value in results.items():
            self.write_scalar(f"{split}/{key}", value, self.epoch)
        if is_final:
            sys.stdout.flush()
        return distributed.broadcast_object(list(results.values())[0])

    def evaluation_outputs(self, data_loader, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(outputs, labels) of each batch of `data_loader`, in its order: the model's inference on the batch
        (trainers may compute them otherwise, e.g. from cached image features)."""
        batches = tqdm(data_loader, desc=f"Evaluate {split}", leave=False, disable=not progress_bars_shown())
        for batch in batches:
            input, label = self.parse_batch_test(batch)
            yield self.model_inference(input), label

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def parse_batch_test(self, batch: dict):
        return _to_device(batch["img"], self.device), batch["label"].to(self.device)


class TrainerX(SimpleTrainer):
    """Trains on labelled data only (train_loader_x)."""

    def _epoch_batches(self):
        """An iterator over this epoch's batches, and the index of its first batch.

        After a mid-epoch resume, the RNG is rewound to the epoch start, the data of the batches
        already trained on is loaded again and discarded (so the sampler order and augmentation
        streams match the uninterrupted run), and the RNG is set to its state at the stop.
        This is exact when loader workers start afresh each epoch (NUM_WORKERS 0, or workers that
        are not persistent); persistent workers carry RNG state that no checkpoint can hold.
        """
        partial, self._partial_epoch = self._partial_epoch, None
        if partial is None:
            self._epoch_rng = capture_rng_state()
            return iter(self.train_loader_x), 0
        self._epoch_rng = partial["epoch_rng"]
        restore_rng_state(partial["epoch_rng"])
        batches = iter(self.train_loader_x)
        skipped = partial["batches_done"]
        if skipped >= self.num_batches:
            raise UserError(f"The checkpoint stopped after batch {skipped} of epoch {self.epoch + 1}, but an epoch "
                            f"now has {self.num_batches} batches: the data or batch size changed since it was "
                            "saved. Restore the original settings or start a new OUTPUT_DIR.")
        print(f"Replaying the data order of the first {skipped} batches of epoch {self.epoch + 1}")
        for _ in range(skipped):
            next(batches)
        restore_rng_state(partial["rng"])
        return batches, skipped

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        batches, first_batch = self._epoch_batches()
        bar = tqdm(total=self.num_batches, initial=first_batch, desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
                   leave=False, dynamic_ncols=True, disable=not progress_bars_shown())
        end = time.time()
        for self.batch_idx, batch in enumerate(batches, start=first_batch):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            nb_remain = self.num_batches - self.batch_idx - 1 + (self.max_epoch - self.epoch - 1) * self.num_batches
            eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
            lr = self.get_current_lr()
            print_freq = self.cfg.TRAIN.PRINT_FREQ
            if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                info = [
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {lr:.4e}",
                    f"eta {eta}",
                ]
                tqdm.write(" ".join(info))  # like print, but keeps the progress bar intact

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", lr, n_iter)
            if not bar.disable:
                postfix = {name: f"{meter.avg:.4g}" for name, meter in losses.meters.items()}
                bar.set_postfix(postfix | {"lr": f"{lr:.2e}", "eta": eta}, refresh=False)
                bar.update(1)

            if self.stop_requested() and self.batch_idx + 1 < self.num_batches:
                bar.close()
                self.stop_training(batches_done=self.batch_idx + 1)
            end = time.time()
        bar.close()

    def parse_batch_train(self, batch: dict):
        input = _to_device(batch["img"], self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain
