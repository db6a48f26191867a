"""Train or evaluate a prompt learner: arguments -> config -> trainer -> train / test.

The arguments are the original's, so its scripts run unchanged, e.g.

    python train.py --root DATA --seed 1 --trainer CoOp_ATP \
        --dataset-config-file configs/datasets/caltech101.yaml --config-file configs/trainers/CoOp/vit_b16.yaml \
        --output-dir output/caltech101/seed1 DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

A bad input (missing data or weights, an unknown name or config key, a checkpoint that does not fit, ...) ends the
run with one `error:` line on stderr and exit status 2; `--debug` (or ATPROMPT_DEBUG=1) shows the traceback.
docs/RELIABILITY.md says what happens on each failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import torch
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers)
from dassl.engine import TrainerBase, build_trainer
from dassl.engine.distributed import init_distributed, is_main_process, report_failure
from dassl.engine.failures import user_error_message
from dassl.engine.records import read_record, setting_fingerprint, write_record
from dassl.engine.run_folder import RunFolder
from dassl.utils import collect_env_info, set_random_seed
from trainers.run_spec import DEBUG_ENV, build_parser, check_args, config_and_notes, run_identity


def main(argv: list[str] | None = None) -> int:
    """Run train.py. A bad input prints one `error:` line on stderr and returns 2; a bug raises with its traceback."""
    args = build_parser().parse_args(argv)
    folder, cfg = RunFolder(), None
    try:
        cfg, notes = config_and_notes(args)
        check_args(args, cfg)
        return run(args, cfg, folder, notes)
    except KeyboardInterrupt:
        folder.close_failed("interrupted")
        print("\nInterrupted", file=sys.stderr)
        return 130
    except Exception as err:
        message = user_error_message(err, cfg)
        folder.close_failed(message or f"{type(err).__name__}: {err}")
        if message is None or args.debug or os.environ.get(DEBUG_ENV):
            raise
        report_failure(f"error: {message}")  # for torchrun's failure summary (tools/torchrun.py prints it last)
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        folder.close()


def run(args: argparse.Namespace, cfg: CfgNode, folder: RunFolder, notes: Sequence[str] = ()) -> int:
    init_distributed(cfg.USE_CUDA)  # several processes under torchrun: docs/MULTI_GPU.md
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    else:
        print("Note: SEED is -1 (no fixed seed): this run's numbers cannot be repeated, so its record is never taken "
              "for another run's, and the result tables leave it out")
    folder.open(cfg.OUTPUT_DIR if is_main_process() else None)  # rank 0 alone writes log.txt
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)
    for note in notes:
        print(note)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    identity = run_identity(args, cfg)  # after the reader made its split and few-shot files, if it had to
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test(is_final=True)
    elif not args.no_train:
        trainer.train()
    if is_main_process() and cfg.OUTPUT_DIR and (args.eval_only or not args.no_train):
        write_record(cfg.OUTPUT_DIR, run_record(args, cfg, trainer, identity))
    return 0


def run_record(args: argparse.Namespace, cfg: CfgNode, trainer: TrainerBase, identity: dict) -> dict:
    """The results.json of a finished run (dassl/engine/records.py says what it is for)."""
    record = {
        "status": "finished", "kind": identity["kind"], "trainer": cfg.TRAINER.NAME, "dataset": cfg.DATASET.NAME,
        "seed": cfg.SEED, "shots": cfg.DATASET.NUM_SHOTS, "subsample": cfg.DATASET.SUBSAMPLE_CLASSES,
        "metrics": trainer.test_results, "fingerprint": identity["fingerprint"], "settings": identity["settings"],
        "inputs": identity["inputs"], "data": identity["data"], "setting": setting_fingerprint(identity),
        "dataset_label": getattr(trainer.dm.dataset, "label", None),  # an image folder's own name
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        **(trainer.describe() if hasattr(trainer, "describe") else {}),
    }
    if identity["kind"] != "eval":
        record["epochs"] = trainer.max_epoch
    elif args.model_dir:
        source = read_record(args.model_dir) or {}
        record["source"] = {"model_dir": os.path.abspath(args.model_dir), "files": identity["model"],
                            "epoch": trainer.loaded_epoch, "fingerprint": source.get("fingerprint"),
                            "setting": source.get("setting"), "epochs": source.get("epochs")}
    return record


if __name__ == "__main__":
    sys.exit(main())
