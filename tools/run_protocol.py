"""The one runner behind every scripts/<method>/*.sh: which train.py jobs a script runs, and running them.

A script is named `<variant>_<protocol>_<stage>.sh` under its method's folder (e.g. scripts/coop/
atprompt_base2new_train.sh) and only calls this file with its own path. Its family (`FAMILIES`) says which trainer
and config it runs and where its outputs go, with the original's folder layout; the hyper-parameters (EPO, NCTX,
WEIGHT) are the protocol's for the dataset, from datasets/catalog.py, unless the environment sets them. What a user
varies that the layout does not show (such a setting, every EXTRA_OPTS option that can change the numbers, the
search's bases) adds one folder before seed<N>, so other settings never share a folder; options that never change
them (dassl.engine.records.NOT_DECIDING, e.g. EXTRA_OPTS="FEATURE_CACHE.ENABLED True") add none.

A job whose folder holds a finished run (results.json) with the same settings fingerprint is skipped; one whose
folder holds a finished run of other settings is refused, naming what differs.

    bash scripts/coop/atprompt_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
    bash scripts/coop/atprompt_xd_train.sh [DATA_ROOT] [SEED ...]          (cross-dataset training: ImageNet)
    bash scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE ...]
    bash scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]

Environment: DATA (data root when DATA_ROOT is not given, default ./data), OUTPUT (output root, default ./output),
SHOTS (default 16), CFG (the trainer config's name), EPO / NCTX / WEIGHT (override the protocol's values), EXTRA_OPTS
(more KEY VALUE config options, shell-quoted), ANCHOR (AnchorOPT's stage II: TRAINER.ANCHOROPT.ANCHOR_WEIGHTS, an
anchor file or a stage-I output folder; as with the original's anchor_weights/ it names no folder, and a finished
run trained with another anchor is refused by its checksum), FEATURE_CACHE=0 (recompute every test image's features
instead of reading them from the shared feature cache, `FEATURE_CACHE.DIR`, default ~/.cache/atprompt/features,
which the scripts use since a protocol evaluates the same images again and again; the numbers are the same either
way), FORCE=1 (run even if the job already finished), DRY_RUN=1 (print the train.py commands instead of running
them), PYTHON (default python3).
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

import train  # noqa: E402
from dassl.engine.records import (  # noqa: E402
    NOT_DECIDING,
    identity_problem,
    load_record,
    reuse_decision,
    unusable_record,
)
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
_IN_TRAINING = "{TRAIN_DIR}/evaluation"  # an evaluation folder inside the training run's folder
_ANCHOR = "/ACTX_{ANCHOR_LEN}_EPO_{EPO}_MSE_{ANCHOR_MSE_WEIGHT}"
_ANCHOR_OPTS = ("TRAINER.ANCHOROPT.ANCHOR_LEN {ANCHOR_LEN} TRAINER.ANCHOROPT.ANCHOR_MSE_WEIGHT {ANCHOR_MSE_WEIGHT} "
                "TRAINER.ANCHOROPT.MAX_TEMPLATE_LENGTH 10")
_PROMPT = "/CTX_{NCTX}_ACTX_{ANCHOR_LEN}_EPO_{EPO}_CE_{PROMPT_CE_WEIGHT}"
_PROMPT_OPTS = ("TRAINER.ANCHOROPT.N_CTX {NCTX} TRAINER.ANCHOROPT.ANCHOR_LEN {ANCHOR_LEN} "
                "TRAINER.ANCHOROPT.PROMPT_CE_WEIGHT {PROMPT_CE_WEIGHT} TRAINER.ANCHOROPT.GUMBEL_TEMP 1.0")
_ANCHOROPT = _PROMPT + "_KD_W_{KD_WEIGHT}_T_{KD_TEMPERATURE}"
_ANCHOROPT_OPTS = (_PROMPT_OPTS + " TRAINER.ANCHOROPT.KD_TEMPERATURE {KD_TEMPERATURE} "
                   "TRAINER.ANCHOROPT.KD_WEIGHT {KD_WEIGHT}")
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
    # AnchorOPT, in the original's folders (evaluations inside the training folder, as its scripts put them; the
    # cross-dataset ones one folder per target, where the original's overwrote each other).
    "coop/anchoropt_anchor": Family("CoOp_Pretrain_Anchor", "CoOp", "vit_b16", _B2N + _ANCHOR + _SEED,
                                    _IN_TRAINING, _ANCHOR_OPTS),
    "coop/anchoropt_base2new": Family("CoOp_AnchorOPT", "CoOp", "vit_b16", _B2N + _ANCHOROPT + _SEED, _IN_TRAINING,
                                      _ANCHOROPT_OPTS),
    "coop/anchoropt_xd": Family("CoOp_AnchorOPT", "CoOp", "vit_b16",
                                f"{catalog.XD_SOURCE}/{{TRAINER}}_cross/{{CFG}}_{{SHOTS}}shots" + _ANCHOROPT + _SEED,
                                _IN_TRAINING + "/{DATASET}", _ANCHOROPT_OPTS, source=catalog.XD_SOURCE),
    "cocoop/anchoropt_base2new": Family("CoCoOp_AnchorOPT", "CoCoOp", _COCOOP, _B2N + _ANCHOROPT + _SEED,
                                        _IN_TRAINING, _ANCHOROPT_OPTS),
    "maple/anchoropt_base2new": Family("MaPLe_AnchorOPT", "MaPLe", _MAPLE, _B2N + _ANCHOROPT + _SEED, _IN_TRAINING,
                                       _ANCHOROPT_OPTS),
    # DePT's variant has no distillation: its folders name the linear-probe weight instead.
    "dept/anchoropt_base2new": Family("DePT_AnchorOPT", "DePT", "vit_b16_ep10_bs4_lr35",
                                      _B2N + _PROMPT + "_W_{WEIGHT}" + _SEED, _IN_TRAINING,
                                      _PROMPT_OPTS + " TRAINER.ANCHOROPT.KD_WEIGHT 0.0 "
                                      "TRAINER.LINEAR_PROBE.WEIGHT {WEIGHT}"),
}
# The original's script names where ours differ ("vanila" as it spelled it; MaPLe's cross-dataset "test"; the
# AnchorOPT stage-I scripts, named by what they do to the anchor).
ALIASES = {"vanila": "vanilla", "xd_test": "xd_eval", "anchoropt_pretrain_anchor": "anchoropt_anchor_train",
           "anchoropt_eval_anchor": "anchoropt_anchor_eval"}


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


def extra_options() -> list[str]:
    return shlex.split(os.environ.get("EXTRA_OPTS", ""))


def _readable(value: str) -> str:
    """A config value as part of a folder name: "['shape', 'material']" -> "shape+material", "ViT-L/14" ->
    "ViT-L-14"."""
    items = [item.strip(" '\"") for item in value.strip("[]()").split(",")]
    return "+".join(items).replace("/", "-").replace(" ", "-")


def varied(folder: str, template: str, settings: dict[str, str], options: list[str] = ()) -> str:
    """`folder` with one more component before its last naming what the user varied that `template` does not show:
    the settings the environment overrides and the `KEY VALUE` options (EXTRA_OPTS first) that can change numbers."""
    parts = [f"{key.lower()}{value}" for key, value in settings.items()
             if key in os.environ and "{" + key + "}" not in template]
    pairs = [*extra_options(), *options]
    parts += [f"{'.'.join(key.lower().split('.')[-2:])}-{_readable(value)}"
              for key, value in zip(pairs[::2], pairs[1::2]) if key not in NOT_DECIDING]
    return os.path.join(os.path.dirname(folder), "_".join(parts), os.path.basename(folder)) if parts else folder


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
    settings = env_settings(name, family.source or dataset)
    for seed in seeds:
        values = {**fields, "SEED": seed, "DATASET": dataset}
        train_dir = varied(family.train_dir.format(**values), family.train_dir, settings)
        flags = ["--root", data_root, "--seed", seed, "--trainer", family.trainer,
                 "--dataset-config-file", dataset_config(dataset), "--config-file", config]
        options = [*family.options.format(**values).split(), "DATASET.NUM_SHOTS", values["SHOTS"]]
        if os.environ.get("ANCHOR") and family.trainer.endswith("_AnchorOPT"):
            options += ["TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", os.environ["ANCHOR"]]
        if stage == "train":
            options += ["OPTIM.MAX_EPOCH", values["EPO"], "DATASET.SUBSAMPLE_CLASSES", train_split]
            jobs.append(Job("train", train_dir, flags + options))
        else:
            flags += ["--model-dir", os.path.join(output_root(), train_dir), "--load-epoch", values["EPO"],
                      "--eval-only"]
            options += ["DATASET.SUBSAMPLE_CLASSES", eval_split]
            if family.eval_dir.startswith(_IN_TRAINING):  # the training folder already names what was varied
                eval_dir = family.eval_dir.format(**values, TRAIN_DIR=train_dir)
            else:
                eval_dir = varied(family.eval_dir.format(**values), family.eval_dir, settings)
            jobs.append(Job("eval", eval_dir, flags + options))
    return jobs


def zeroshot_jobs(args: list[str]) -> list[Job]:
    if not args:
        raise UserError("missing DATASET: pass a configs/datasets/<DATASET>.yaml name, e.g. caltech101")
    dataset, data_root = args[0], args[1] if len(args) > 1 else os.environ.get("DATA", "data")
    cfg = os.environ.get("CFG", "vit_b16")
    config = str(REPO / "configs" / "trainers" / "CoOp" / f"{cfg}.yaml")
    return [Job("eval", varied(f"evaluation/ZeroshotCLIP/{cfg}_{subsample}/{dataset}/seed1", "", {}),
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
    folder = f"{dataset}/AttributeCompute/{cfg}_{shots}shots/nctx{nctx}_cscFalse_ctpend/search_attribute"
    return [Job("train", varied(folder, "{NCTX}", settings, bases),
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


def logged_as_finished(kind: str, folder: str) -> bool:
    """For a folder without a record (older outputs, the original's): whether its newest log shows a final result."""
    return any(final_result(path.read_text(errors="replace"), "train" if kind == "train" else "auto") is not None
               for path in log_files(Path(folder))[:1])


def already_done(job: Job, folder: str, argv: list[str]) -> bool:
    """Whether the folder holds this job's finished run (dassl/engine/records.py decides); a finished run of other
    settings or data there is an error, and why a job runs again is said in a note."""
    record, problem = load_record(folder)
    if record is None and not problem:
        return logged_as_finished(job.kind, folder)
    problem = problem or identity_problem(record)
    if problem:
        decision = unusable_record(job.kind, folder, problem)
    elif record["status"] != "finished":
        return False
    else:
        try:
            args = train.build_parser().parse_args(argv)
            planned = train.run_identity(args, train.setup_cfg(args))
        except UserError:
            return False  # train.py says what is wrong with this job
        decision = reuse_decision(job.kind, folder, record, planned)
    if decision.action == "refuse":
        raise UserError(decision.reason)
    if decision.reason:
        print(f"Note: {decision.reason}")
    return decision.action == "skip"


def run(job: Job) -> int:
    folder = os.path.join(output_root(), job.folder)
    cache = [] if os.environ.get("FEATURE_CACHE") == "0" else ["FEATURE_CACHE.ENABLED", "True"]
    argv = ["--output-dir", folder, *job.argv, *cache, *extra_options()]
    command = [os.environ.get("PYTHON", "python3"), str(REPO / "train.py"), *argv]
    if os.environ.get("DRY_RUN"):
        print(shlex.join(command))
        return 0
    if not os.environ.get("FORCE") and already_done(job, folder, argv):
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
        try:
            code = run(job)
        except UserError as err:
            print(f"error: {err.message}", file=sys.stderr)
            return 2
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
