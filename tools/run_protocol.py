"""The one runner behind every scripts/<method>/*.sh: which train.py jobs a script runs, and running them.

A script is named `<variant>_<protocol>_<stage>.sh` under its method's folder (e.g. scripts/coop/
atprompt_base2new_train.sh) and only calls this file with its own path. Its family (`FAMILIES`) says which trainer
and config it runs and where its outputs go, with the original's folder layout; the hyper-parameters (EPO, NCTX,
WEIGHT) are the protocol's for the dataset, from datasets/catalog.py, unless the environment sets them.

    bash scripts/coop/atprompt_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
    bash scripts/coop/atprompt_xd_train.sh [DATA_ROOT] [SEED ...]          (cross-dataset training: ImageNet)
    bash scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE ...]
    bash scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]

Environment: DATA (data root when DATA_ROOT is not given, default ./data), OUTPUT (output root, default ./output),
SHOTS (default 16), CFG (the trainer config's name), EPO / NCTX / WEIGHT (override the protocol's values), EXTRA_OPTS
(more KEY VALUE config options, shell-quoted), FORCE=1 (run even if the job already finished), DRY_RUN=1 (print the
train.py commands instead of running them), PYTHON (default python3).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dassl.utils.errors import UserError  # noqa: E402
from datasets import catalog  # noqa: E402
from tools.results import final_result, log_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ATP = ("TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.N_ATT1 {NCTX} TRAINER.ATPROMPT.N_ATT2 {NCTX} "
       "TRAINER.ATPROMPT.N_ATT3 {NCTX}")
COOP = "TRAINER.COOP.N_CTX {NCTX} TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end"


@dataclass(frozen=True)
class Family:
    """The train and evaluation scripts of one method variant on one protocol.

    Folder templates are relative to OUTPUT and filled with DATASET, TRAINER, CFG, SHOTS, SEED and the protocol's
    settings. Cross-dataset families train on `source` (all its classes) and evaluate on the script's dataset.
    """

    trainer: str
    config_dir: str  # configs/trainers/<config_dir>/<CFG>.yaml
    cfg: str
    train_dir: str
    eval_dir: str
    options: str  # KEY VALUE options of both stages (the training one also gets OPTIM.MAX_EPOCH)
    source: str | None = None

    @property
    def splits(self) -> tuple[str, str]:
        """DATASET.SUBSAMPLE_CLASSES of training and of evaluation."""
        return ("all", "all") if self.source else ("base", "new")


_B2N = "{DATASET}/{TRAINER}/{CFG}_{SHOTS}shots"
_XD = f"{catalog.XD_SOURCE}/{{TRAINER}}/{{CFG}}_{{SHOTS}}shots"
_EVAL = "evaluation/{TRAINER}/{CFG}_{SHOTS}shots"
_SEED = "/seed{SEED}"


def _pair(method: str, protocol: str, trainer: str, config_dir: str, cfg: str, train_dir: str, eval_dir: str,
          options: str, source: str | None = None, vanilla_cfg: str | None = None,
          vanilla: bool = True) -> dict[str, Family]:
    """The method with ATPrompt (`<trainer>_ATP`, the attribute options added) and, unless `vanilla` is False,
    alone, on one protocol."""
    families = {f"{method}/atprompt_{protocol}": Family(f"{trainer}_ATP", config_dir, cfg, train_dir, eval_dir,
                                                        f"{options} {ATP}", source)}
    if vanilla:
        families[f"{method}/vanilla_{protocol}"] = Family(trainer, config_dir, vanilla_cfg or cfg, train_dir,
                                                          eval_dir, options, source)
    return families


_COCOOP, _MAPLE = "vit_b16_c4_ep10_batch1_ctxv1", "vit_b16_c2_ep5_batch4_2ctx"
_COOP_TRAIN = "/nctx{NCTX}_cscFalse_ctpend"
_XD_FOLDERS = _XD + "_few_shots/nctx{NCTX}_csc_ctp/CTX_{NCTX}_epo_{EPO}" + _SEED
_KG = "/CTX_{NCTX}_WT_{WEIGHT}_epo_{EPO}"
# The original's folder names, drifts included (the CoOp evaluation folder says "ctp_end", the training one
# "ctpend"), so its outputs and ours share one tree. Where a folder differs from the original's, it is a fix:
# - coop xd: the original's evaluation looked for a model folder that training never writes, on half the classes;
# - cocoop xd: evaluated with the context length trained (the original used 2), in a "_few_shots" folder like the
#   training one, so it never collides with the base-to-novel evaluation of the same dataset;
# - maple: the epoch count is part of the evaluation folder (the original's 5- and 10-epoch evaluations shared one),
#   and MAPLE.N_CTX is set in cross-dataset runs (the original's never set it, which broke MaPLe_ATP's offsets);
# - dept: evaluations get their own folder under evaluation/ (the original wrote into the training folder).
FAMILIES: dict[str, Family] = {
    **_pair("coop", "base2new", "CoOp", "CoOp", "vit_b16", _B2N + _COOP_TRAIN + "/CTX_{NCTX}_epo_{EPO}" + _SEED,
            _EVAL + "/nctx{NCTX}_cscFalse_ctp_end/{DATASET}" + _SEED, COOP),
    **_pair("coop", "xd", "CoOp", "CoOp", "vit_b16", _XD + _COOP_TRAIN + "_few_shots/CTX_{NCTX}_epo_{EPO}" + _SEED,
            _EVAL + _COOP_TRAIN + "/{DATASET}" + _SEED, COOP, source=catalog.XD_SOURCE, vanilla=False),
    **_pair("cocoop", "base2new", "CoCoOp", "CoCoOp", _COCOOP, _B2N + "/CTX_{NCTX}_epo_{EPO}" + _SEED,
            _EVAL + "/nctx{NCTX}_csc_ctp/{DATASET}" + _SEED, "TRAINER.COCOOP.N_CTX {NCTX}"),
    **_pair("cocoop", "xd", "CoCoOp", "CoCoOp", _COCOOP, _XD_FOLDERS,
            _EVAL + "_few_shots/nctx{NCTX}_csc_ctp/{DATASET}" + _SEED, "TRAINER.COCOOP.N_CTX {NCTX}",
            source=catalog.XD_SOURCE),
    **_pair("maple", "base2new", "MaPLe", "MaPLe", _MAPLE, _B2N + "/CTX_{NCTX}_epo_{EPO}" + _SEED,
            _EVAL + "/nctx{NCTX}_csc_ctp_epo{EPO}/{DATASET}" + _SEED, "TRAINER.MAPLE.N_CTX {NCTX}"),
    **_pair("maple", "xd", "MaPLe", "MaPLe", _MAPLE + "_cross_datasets", _XD_FOLDERS,
            _EVAL + "/nctx{NCTX}_csc_ctp_epo{EPO}/{DATASET}" + _SEED, "TRAINER.MAPLE.N_CTX {NCTX}",
            source=catalog.XD_SOURCE),
    **_pair("dept", "base2new", "DePT", "DePT", "vit_b16_ep10_bs4_lr35", _B2N + "/CTX_{NCTX}_epo_{EPO}" + _SEED,
            _EVAL + "/CTX_{NCTX}_epo_{EPO}/{DATASET}" + _SEED,
            "TRAINER.COOP.N_CTX {NCTX} TRAINER.LINEAR_PROBE.WEIGHT {WEIGHT}", vanilla_cfg="vit_b16_ep20_bs4_lr35"),
    **_pair("kgcoop", "base2new", "KgCoOp", "KgCoOp", "vit_b16_ep100_ctxv4", _B2N + _KG + _SEED,
            _EVAL + _KG + "/{DATASET}" + _SEED, f"{COOP} TRAINER.COOP.W {{WEIGHT}}"),
    **_pair("kgcoop", "xd", "KgCoOp", "CoOp", "vit_b16", _XD + _COOP_TRAIN + "_few_shots/CTX_{NCTX}_epo_{EPO}" + _SEED,
            _EVAL + _COOP_TRAIN + "/{DATASET}" + _SEED, f"{COOP} TRAINER.COOP.W {{WEIGHT}}",
            source=catalog.XD_SOURCE, vanilla=False),
}
# The original's script names where ours differ ("vanila" as it spelled it; MaPLe's cross-dataset "test").
ALIASES = {"vanila": "vanilla", "xd_test": "xd_eval"}


@dataclass(frozen=True)
class Job:
    kind: str  # "train" or "eval"
    folder: str
    argv: list[str]  # train.py arguments after --output-dir FOLDER


def usage(script: str) -> str:
    """The script's own header comment (what it does and how to call it) and the environment it reads."""
    lines = [line[2:] for line in Path(script).read_text().splitlines()[1:] if line.startswith("# ")]
    return "\n".join(lines + ["", "Environment: " + __doc__.split("Environment: ", 1)[1].strip()])


def dataset_config(key: str) -> str:
    catalog.by_key(key)  # an unknown or wrongly cased name is an error listing the valid ones
    return str(REPO / "configs" / "datasets" / f"{key}.yaml")


def env_settings(protocol: str, dataset: str) -> dict[str, str]:
    """The protocol's hyper-parameters for the dataset, each overridden by the environment variable of its name."""
    values = catalog.protocol_settings(protocol, dataset)
    return {key: os.environ.get(key) or str(value) for key, value in values.items()}


def family_jobs(name: str, stage: str, args: list[str]) -> list[Job]:
    family = FAMILIES[name]
    cross = family.source is not None
    if cross and stage == "train":
        dataset, rest = family.source, args
    elif not args:
        raise UserError("missing DATASET: pass a configs/datasets/<DATASET>.yaml name, e.g. caltech101")
    else:
        dataset, rest = args[0], args[1:]
    data_root = rest[0] if rest else os.environ.get("DATA", "data")
    seeds = rest[1:] or ["1", "2", "3", "4", "5"]
    train_split, eval_split = family.splits
    fields = {"TRAINER": family.trainer, "CFG": os.environ.get("CFG", family.cfg),
              "SHOTS": os.environ.get("SHOTS", "16"), **env_settings(name, family.source or dataset)}
    config = str(REPO / "configs" / "trainers" / family.config_dir / f"{fields['CFG']}.yaml")
    jobs = []
    for seed in seeds:
        values = {**fields, "SEED": seed, "DATASET": dataset}
        train_dir = family.train_dir.format(**values)
        flags = ["--root", data_root, "--seed", seed, "--trainer", family.trainer,
                 "--dataset-config-file", dataset_config(dataset), "--config-file", config]
        options = [*family.options.format(**values).split(), "DATASET.NUM_SHOTS", values["SHOTS"]]
        if stage == "train":
            options += ["OPTIM.MAX_EPOCH", values["EPO"], "DATASET.SUBSAMPLE_CLASSES", train_split]
            jobs.append(Job("train", train_dir, flags + options))
        else:
            flags += ["--model-dir", os.path.join(output_root(), train_dir), "--load-epoch", values["EPO"],
                      "--eval-only"]
            options += ["DATASET.SUBSAMPLE_CLASSES", eval_split]
            jobs.append(Job("eval", family.eval_dir.format(**values), flags + options))
    return jobs


def zeroshot_jobs(args: list[str]) -> list[Job]:
    if not args:
        raise UserError("missing DATASET: pass a configs/datasets/<DATASET>.yaml name, e.g. caltech101")
    dataset, data_root = args[0], args[1] if len(args) > 1 else os.environ.get("DATA", "data")
    cfg = os.environ.get("CFG", "vit_b16")
    config = str(REPO / "configs" / "trainers" / "CoOp" / f"{cfg}.yaml")
    return [Job("eval", f"evaluation/ZeroshotCLIP/{cfg}_{subsample}/{dataset}/seed1",
                ["--root", data_root, "--seed", "1", "--trainer", "ZeroshotCLIP", "--dataset-config-file",
                 dataset_config(dataset), "--config-file", config, "--eval-only",
                 "DATASET.SUBSAMPLE_CLASSES", subsample])
            for subsample in args[2:] or ["base", "new"]]


def search_jobs(args: list[str]) -> list[Job]:
    if not 1 <= len(args) <= 3:
        raise UserError('usage: scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]')
    dataset, data_root = args[0], args[1] if len(args) > 1 else os.environ.get("DATA", "data")
    settings = env_settings("attribute_search/main", dataset)
    cfg, shots, nctx = os.environ.get("CFG", "vit_b16"), os.environ.get("SHOTS", "16"), settings["NCTX"]
    bases = ["TRAINER.ATTRIBUTE_SEARCH.BASES", repr(args[2].split())] if len(args) == 3 else []
    return [Job("train", f"{dataset}/AttributeCompute/{cfg}_{shots}shots/nctx{nctx}_cscFalse_ctpend/search_attribute",
                ["--root", data_root, "--seed", "1", "--trainer", "AttributeCompute", "--dataset-config-file",
                 dataset_config(dataset), "--config-file", str(REPO / "configs" / "trainers" / "CoOp" / f"{cfg}.yaml"),
                 "TRAINER.COOP.N_CTX", nctx, "TRAINER.COOP.CSC", "False", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end",
                 *[arg for k in range(1, 6) for arg in (f"TRAINER.COOP.N_ATT{k}", nctx)], "OPTIM.MAX_EPOCH",
                 settings["EPO"],
                 "TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE", "-1", "DATASET.NUM_SHOTS", shots,
                 "DATASET.SUBSAMPLE_CLASSES", "base", *bases])]


def jobs_of(script: str, args: list[str]) -> list[Job]:
    """The jobs `scripts/<method>/<name>.sh ARGS` runs."""
    path = Path(script)
    method, name = path.parent.name, path.stem
    for old, new in ALIASES.items():
        name = name.replace(old, new)
    if (method, name) == ("zsclip", "zeroshot"):
        return zeroshot_jobs(args)
    if method in ("attribute_search", "attribute_compute") and name == "main":
        return search_jobs(args)
    family, _, stage = name.rpartition("_")
    if f"{method}/{family}" not in FAMILIES or stage not in ("train", "test", "eval"):
        raise UserError(f"{script} is not a run script this runner knows (families: {', '.join(FAMILIES)})")
    return family_jobs(f"{method}/{family}", "train" if stage == "train" else "eval", args)


def output_root() -> str:
    return os.environ.get("OUTPUT", "output")


def finished(kind: str, folder: str) -> bool:
    """Whether the folder's newest log with a final result shows one (for training: the test after training)."""
    return any(final_result(path.read_text(errors="replace"), "train" if kind == "train" else "auto") is not None
               for path in log_files(Path(folder))[:1])


def run(job: Job) -> int:
    folder = os.path.join(output_root(), job.folder)
    command = [os.environ.get("PYTHON", "python3"), str(REPO / "train.py"), "--output-dir", folder, *job.argv,
               *shlex.split(os.environ.get("EXTRA_OPTS", ""))]
    if os.environ.get("DRY_RUN"):
        print(shlex.join(command))
        return 0
    if not os.environ.get("FORCE") and finished(job.kind, folder):
        print(f"Results are available in {folder}. Skip this job")
        return 0
    return subprocess.run(command).returncode


def main(argv: list[str]) -> int:
    script, args = argv[0], argv[1:]
    if args[:1] in (["-h"], ["--help"]):
        print(usage(script))
        return 0
    try:
        jobs = jobs_of(script, args)
    except UserError as err:
        print(f"error: {err.message}\n\n{usage(script)}", file=sys.stderr)
        return 2
    for job in jobs:
        code = run(job)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
