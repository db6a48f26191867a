"""What a train.py command describes, before it runs: its arguments, the config they make, the checks made before
any output is written, and the identity of the run (what decides its numbers). The run scripts' runner
(tools/run_protocol.py) asks the same questions of a job to decide whether its folder already holds it.
"""

from __future__ import annotations

import argparse
import os

from yacs.config import CfgNode

from clip.clip import file_sha256
from dassl.config.checks import check_settings
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.identity import data_identity
from dassl.engine import TRAINER_REGISTRY
from dassl.engine.records import fingerprint
from dassl.engine.run_folder import checkpoint_folders
from dassl.utils.errors import UserError
from trainers import config as trainer_config
from trainers.base import checkpoint_file
from trainers.method import run_settings
from trainers.trained import find_model

DEBUG_ENV = "ATPROMPT_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py", description="Train or evaluate a prompt learner.")
    parser.add_argument("--root", type=str, default="", help="path to the datasets")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory to resume from")
    parser.add_argument("--seed", type=int, default=-1, help="fixed seed (0 to 2**32 - 1)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="trainer config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="dataset config file")
    parser.add_argument("--trainer", type=str, default="", help="name of the trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of the CNN backbone")
    parser.add_argument("--head", type=str, default="", help="not used: CLIP prompt learners have no separate head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load the model from this directory for eval-only")
    parser.add_argument("--load-epoch", type=int, help="load the weights of this epoch (default: best, else latest)")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--debug", action="store_true", help=f"show the traceback of errors (or set {DEBUG_ENV}=1)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options (KEY VALUE)")
    return parser


def flag_values(args: argparse.Namespace) -> dict[str, object]:
    """The config values the command-line flags set (a flag left out sets nothing)."""
    if args.head:
        raise UserError(f"--head {args.head}: the trainers here build on CLIP and take no head; leave --head out")
    values = {"DATASET.ROOT": args.root, "OUTPUT_DIR": args.output_dir, "RESUME": args.resume,
              "DATASET.SOURCE_DOMAINS": args.source_domains, "DATASET.TARGET_DOMAINS": args.target_domains,
              "INPUT.TRANSFORMS": args.transforms, "TRAINER.NAME": args.trainer, "MODEL.BACKBONE.NAME": args.backbone}
    values = {key: value for key, value in values.items() if value}
    if args.seed != -1:  # the original ignored --seed 0; SEED's range is checked with the other settings
        values["SEED"] = args.seed
    return values


def config_and_notes(args: argparse.Namespace) -> tuple[CfgNode, list[str]]:
    """Defaults, dataset yaml, trainer yaml, command-line flags, then `KEY VALUE` options (last wins), and what is
    to be said in the log about the keys given (trainers/config.py `setup_cfg`). An evaluation of a model of ours
    (--eval-only --model-dir) takes every setting of the model from its checkpoint's record of its training run."""
    files = [(args.dataset_config_file, "--dataset-config-file"), (args.config_file, "--config-file")]
    model = find_model(args.model_dir, args.load_epoch) if args.eval_only and args.model_dir else None
    training = model.training() if model else None
    cfg, notes = trainer_config.setup_cfg(files, flag_values(args), args.opts or [], training)
    if model and not training:
        notes.append(f"Note: {model.path} records no settings (a checkpoint of the original code): it is evaluated "
                     "with the settings given")
    return cfg, notes


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    return config_and_notes(args)[0]


# ----- checks before anything is written ----------------------------------------------------------------------
def check_args(args: argparse.Namespace, cfg: CfgNode) -> None:
    """Refuse unknown names, missing folders, values out of range and contradictory flags before any output is
    created."""
    check_settings(cfg, training=not (args.eval_only or args.no_train))
    if cfg.DATASET.NAME:
        DATASET_REGISTRY.get(cfg.DATASET.NAME)
    if cfg.TRAINER.NAME:
        trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
        if hasattr(trainer, "check_settings"):  # the method's own settings (ATPrompt's attributes, ...)
            trainer.check_settings(cfg, "eval" if args.eval_only else "train")
    if not args.eval_only and (args.model_dir or args.load_epoch is not None):
        raise UserError("--model-dir and --load-epoch choose the weights to evaluate and need --eval-only; a "
                        "training run resumes from its --output-dir (or from --resume DIR)")
    if args.resume and not os.path.isdir(args.resume):
        raise UserError(f"--resume {args.resume}: no such folder; pass the output folder of the run to "
                        "continue")
    if not args.eval_only:
        return
    output = os.path.abspath(cfg.OUTPUT_DIR)
    if args.model_dir:
        model_dir = os.path.abspath(args.model_dir)
        if not os.path.isdir(model_dir):
            raise UserError(f"--model-dir {args.model_dir}: no such folder; pass the --output-dir of the "
                            "training run to evaluate")
        if output == model_dir:
            raise UserError(f"--output-dir {cfg.OUTPUT_DIR} is --model-dir: an evaluation never writes into a "
                            "training folder; give it a folder of its own, e.g. <model-dir>/evaluation (as the "
                            "original's AnchorOPT scripts) or one under output/evaluation/")
    trained = checkpoint_folders(output)
    if trained:
        raise UserError(f"--output-dir {cfg.OUTPUT_DIR} holds the checkpoints of a training run "
                        f"({', '.join(trained)}/): an evaluation never writes into a training folder; pass that "
                        "folder as --model-dir and choose another --output-dir")


def run_identity(args: argparse.Namespace, cfg: CfgNode) -> dict:
    """What decides the numbers of the run these arguments describe: its kind, settings, the checksums of the
    checkpoint files an evaluation loads, the identity of the data it reads (dassl/data/identity.py), and their
    fingerprint (dassl/engine/records.py)."""
    trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    kind = "eval" if args.eval_only else getattr(trainer, "RECORD_KIND", "train")
    settings = run_settings(cfg, kind, trainer)
    model = {}
    save_name = trainer.save_name(cfg) if hasattr(trainer, "save_name") else None
    if args.eval_only and args.model_dir and save_name:
        path = checkpoint_file(args.model_dir, save_name, args.load_epoch)
        model = {os.path.relpath(path, args.model_dir): file_sha256(path)}
    files = getattr(trainer, "input_files", lambda *_: [])(cfg, kind)
    backbone = os.path.expanduser(cfg.MODEL.BACKBONE.NAME)
    if os.path.isfile(backbone):  # a named release is fixed by its name; a local file may be replaced
        files = [backbone, *files]
    inputs = {path: file_sha256(path) for path in files}
    data = data_identity(cfg)
    return {"kind": kind, "settings": settings, "model": model, "inputs": inputs, "data": data,
            "fingerprint": fingerprint(kind, settings, {**model, **inputs}, data)}
