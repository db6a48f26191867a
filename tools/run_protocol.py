"""The one runner behind every scripts/<method>/*.sh: which train.py jobs a script runs, and running them.

A script is named `<variant>_<protocol>_<stage>.sh` under its method's folder (e.g. scripts/coop/
atprompt_base2new_train.sh) and only calls this file with its own path. Its family, declared by the method's module
(trainers/families.py), says which trainer and config it runs, where its outputs go (the original's folder layout)
and the protocol's hyper-parameters per dataset (EPO, NCTX, WEIGHT, ...), which the environment overrides. What a
user varies that the layout does not show (such a setting, every EXTRA_OPTS option that can change the numbers, the
search's bases) adds one folder before seed<N>, so other settings never share a folder; options that never change
them (dassl.engine.records.NOT_DECIDING, e.g. EXTRA_OPTS="FEATURE_CACHE.ENABLED True") add none.

A job whose folder holds a finished run (results.json) with the same settings fingerprint is skipped; one whose
folder holds a finished run of other settings is refused, naming what differs.

    bash scripts/coop/atprompt_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
    bash scripts/coop/atprompt_xd_train.sh [DATA_ROOT] [SEED ...]          (cross-dataset training: ImageNet)
    bash scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE ...]
    bash scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]
    python tools/run_protocol.py --list                                     (every family and its scripts)
    python tools/run_protocol.py --write-scripts                            (writes the declared scripts missing)

Environment: DATA (data root when DATA_ROOT is not given, default ./data), OUTPUT (output root, default ./output),
SHOTS (default 16; the few-shot scripts take several, default "1 2 4 8 16"), CFG (the trainer config's name),
EPO / NCTX / WEIGHT (override the protocol's values), EXTRA_OPTS (more KEY VALUE config options, shell-quoted),
ANCHOR (AnchorOPT's stage II: TRAINER.ANCHOROPT.ANCHOR_WEIGHTS, an anchor file or a stage-I output folder; as with
the original's anchor_weights/ it names no folder, and a finished run trained with another anchor is refused by its
checksum), FEATURE_CACHE=0 (recompute every test image's features instead of reading them from the shared feature
cache, `FEATURE_CACHE.DIR`, default ~/.cache/atprompt/features, which the scripts use since a protocol evaluates the
same images again and again; the numbers are the same either way), FORCE=1 (run even if the job already finished),
DRY_RUN=1 (print the train.py commands instead of running them), PYTHON (default python3), LAUNCH (what starts
train.py instead of PYTHON, e.g. "torchrun --nproc_per_node 4" for one job on several GPUs: docs/MULTI_GPU.md).
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

from dassl.engine.records import (  # noqa: E402
    NOT_DECIDING,
    identity_problem,
    load_record,
    read_record,
    reuse_decision,
    unusable_record,
)
from dassl.engine.run_folder import checkpoint_folders  # noqa: E402
from dassl.utils.errors import UserError  # noqa: E402
from datasets import catalog  # noqa: E402
from tools.results import final_result, log_files  # noqa: E402
from trainers import run_spec  # noqa: E402
from trainers.families import FEWSHOT_SHOTS, IN_TRAINING, PROTOCOLS, VARIANTS, Family  # noqa: E402
from trainers.method import Method, methods  # noqa: E402
from trainers.original import SCRIPT_ALIASES, SCRIPT_FOLDER_ALIASES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEEDS = ["1", "2", "3", "4", "5"]


@dataclass(frozen=True)
class Job:
    kind: str  # "train" or "eval"
    folder: str
    argv: list[str]  # train.py arguments after --output-dir FOLDER
    missing: str = ""  # why the job cannot run (an evaluation without its training run): said instead of running


@dataclass(frozen=True)
class Script:
    """A run script: its method's trainer and card, its family and the stage it runs."""

    trainer: type
    card: Method
    family: Family
    stage: str  # "train" or "eval"


def scripts() -> dict[str, Script]:
    """Every run script the registered methods declare, by its path under scripts/ (e.g. "coop/vanilla_xd_eval")."""
    found = {}
    for trainer, card in methods():
        for family in card.families:
            for stem, stage in family.script_stages().items():
                found[f"{card.scripts}/{stem}"] = Script(trainer, card, family, stage)
    return found


def script_of(path: str) -> Script:
    """The script at `path` (its folder and name, the original's names included)."""
    folder, name = Path(path).parent.name, Path(path).stem
    folder = SCRIPT_FOLDER_ALIASES.get(folder, folder)
    for old, new in SCRIPT_ALIASES.items():
        name = name.replace(old, new)
    known = scripts()
    if f"{folder}/{name}" not in known:
        raise UserError(f"{path} is not a run script this runner knows; `python tools/run_protocol.py --list` lists "
                        "them")
    return known[f"{folder}/{name}"]


def family_title(card: Method, family: Family) -> str:
    """E.g. "CoOp+ATPrompt, base-to-novel"."""
    return family.summary or f"{card.name}{VARIANTS.get(family.variant, '')}, {PROTOCOLS[family.protocol]['title']}"


def listing() -> str:
    """Every script family (method, variant, protocol), its trainer and its scripts."""
    rows = [("family", "trainer", "scripts", "what")]
    for _, card in methods():
        for family in card.families:
            stems = ", ".join(f"{stem}.sh" for stem in family.script_stages())
            rows.append((f"{card.scripts}/{family.name}", family.trainer, f"scripts/{card.scripts}/: {stems}",
                         family_title(card, family)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows)


# What each stage of a protocol does, for the header of a script written by --write-scripts.
STAGE_TEXT = {
    ("base2new", "train"): "train on the base classes (the base accuracy is the final test in log.txt)",
    ("base2new", "eval"): "evaluate the trained models on the novel classes",
    ("xd", "train"): "train on all ImageNet classes",
    ("xd", "eval"): "evaluate the ImageNet-trained models on all classes of a target dataset",
    ("anchor", "train"): "learn the anchor on the base classes",
    ("anchor", "eval"): "evaluate the anchor prompt alone on the novel classes",
    ("fewshot", "train"): ("train on all classes with each shot count in SHOTS (default 1 2 4 8 16); the final test, "
                           "on the whole test set, is the result"),
    ("zeroshot", "eval"): "evaluate zero-shot CLIP on the class splits given (default: base and new)",
    ("search", "train"): "search which subset of the attribute bases suits the dataset best",
}
# The arguments of a script where they differ from DATASET [DATA_ROOT] [SEED ...].
PROTOCOL_ARGS = {"zeroshot": "DATASET [DATA_ROOT] [SUBSAMPLE ...]", "search": 'DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]'}


def script_text(path: str, found: Script) -> str:
    """A run script as --write-scripts writes it: a header saying what it runs, then the call of this runner."""
    family, stage = found.family, found.stage
    args = PROTOCOL_ARGS.get(family.protocol, "DATASET [DATA_ROOT] [SEED ...]")
    if family.source and stage == "train":
        args = "[DATA_ROOT] [SEED ...]"
    module = found.trainer.__module__.replace(".", "/") + ".py"
    what = STAGE_TEXT.get((family.protocol, stage), stage)
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# {family_title(found.card, family)}: {what}.",
        f"# usage: bash {path} {args}   (--help: the environment it reads)",
        f"# Its jobs, folders and per-dataset settings are declared in {module} (python tools/run_protocol.py --list).",
        'exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"',
        "",
    ])


def write_scripts() -> list[str]:
    """Write the run scripts that the methods declare and scripts/ lacks (a new method's); return their paths."""
    written = []
    for name, found in scripts().items():
        path = REPO / "scripts" / f"{name}.sh"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script_text(f"scripts/{name}.sh", found))
            path.chmod(0o755)
            written.append(str(path.relative_to(REPO)))
    return written


def usage(script: str) -> str:
    """The script's own header comment (what it does and how to call it) and the environment it reads; this
    runner's usage for a script it does not know."""
    path = Path(script)
    try:
        text = path.read_text() if path.exists() else script_text(script, script_of(script))
    except UserError:
        return __doc__.strip()
    lines = [line[2:] for line in text.splitlines()[1:] if line.startswith("# ")]
    return "\n".join(lines + ["", "Environment: " + __doc__.split("Environment: ", 1)[1].strip()])


def dataset_config(key: str) -> str:
    catalog.by_key(key)  # an unknown or wrongly cased name is an error listing the valid ones
    return str(REPO / "configs" / "datasets" / f"{key}.yaml")


def trainer_config(family: Family, cfg: str) -> str:
    return str(REPO / "configs" / "trainers" / family.config_dir / f"{cfg}.yaml")


def env_settings(family: Family, dataset: str, shots: int | None = None) -> dict[str, str]:
    """The family's hyper-parameters on the dataset (with `shots` per class), each overridden by the environment
    variable of its name."""
    return {key: os.environ.get(key) or str(value) for key, value in family.settings_for(dataset, shots).items()}


def shot_counts(family: Family) -> list[str]:
    """SHOTS: one shot count (default 16), or several for a few-shot family (default "1 2 4 8 16"); -1 is every
    training image."""
    several = family.protocol == "fewshot"
    shots = os.environ.get("SHOTS") or (FEWSHOT_SHOTS if several else "16")
    counts = shots.split()
    if not all(count == "-1" or (count.isdigit() and int(count) >= 1) for count in counts):
        raise UserError(f"SHOTS is '{shots}': give images per class as whole numbers of 1 or more (-1: all), "
                        "e.g. SHOTS=16")
    if len(counts) != 1 and not several:
        raise UserError(f"SHOTS is '{shots}': this script takes one shot count; the few-shot scripts "
                        "(*_fewshot_train.sh) take several")
    return counts


def config_name(family: Family, settings: dict[str, str] | None = None) -> str:
    """CFG: the trainer config's name, from the environment, else the family's settings, else its default."""
    return os.environ.get("CFG") or (settings or {}).pop("CFG", family.cfg)


def extra_options() -> list[str]:
    return shlex.split(os.environ.get("EXTRA_OPTS", ""))


def _readable(value: str) -> str:
    """A config value as part of a folder name: "['shape', 'material']" -> "shape+material", "ViT-L/14" ->
    "ViT-L-14", a file (or a folder given by its path) -> its name without extensions ("descriptions/pets.json" ->
    "pets"): the record names the file and its checksum, the folder need not."""
    path = os.path.expanduser(value)
    if os.path.isfile(path) or (os.sep in value and os.path.isdir(path)):
        name = os.path.basename(os.path.normpath(path))
        return name.split(".", 1)[0] or name
    items = [item.strip(" '\"") for item in value.strip("[]()").split(",")]
    return "+".join(items).replace("/", "-").replace(" ", "-")


def setting_parts(template: str, settings: dict[str, str]) -> list[str]:
    """The settings the environment overrides that `template` does not show, as folder-name parts ("epo4")."""
    return [f"{key.lower()}{value}" for key, value in settings.items()
            if key in os.environ and "{" + key + "}" not in template]


def option_parts(options: list[str] = ()) -> list[str]:
    """The `KEY VALUE` options (EXTRA_OPTS first) that can change numbers, as folder-name parts."""
    pairs = [*extra_options(), *options]
    return [f"{'.'.join(key.lower().split('.')[-2:])}-{_readable(value)}"
            for key, value in zip(pairs[::2], pairs[1::2]) if key not in NOT_DECIDING]


def with_component(folder: str, component: str) -> str:
    """`folder` with one more component before its last ("" adds none)."""
    return os.path.join(os.path.dirname(folder), component, os.path.basename(folder)) if component else folder


def varied(folder: str, template: str, settings: dict[str, str], options: list[str] = ()) -> str:
    """`folder` with one more component before its last naming what the user varied that `template` does not show:
    the settings the environment overrides and the options that can change numbers."""
    return with_component(folder, "_".join(setting_parts(template, settings) + option_parts(options)))


def dataset_and_rest(args: list[str]) -> tuple[str, list[str]]:
    if not args:
        raise UserError("missing DATASET: pass a configs/datasets/<DATASET>.yaml name, e.g. caltech101")
    return args[0], args[1:]


def data_root(rest: list[str]) -> str:
    return rest[0] if rest else os.environ.get("DATA", "data")


def family_jobs(family: Family, stage: str, args: list[str]) -> list[Job]:
    """The jobs of a train or evaluation script: one per shot count and seed."""
    if family.source is not None and stage == "train":
        dataset, rest = family.source, args
    else:
        dataset, rest = dataset_and_rest(args)
    root = data_root(rest)
    return [job(family, stage, dataset, root, shots, seed)
            for shots in shot_counts(family) for seed in rest[1:] or DEFAULT_SEEDS]


def folder_name(dataset: str, root: str) -> str:
    """A dataset's name in output folders: its config key, or an image folder's own name (DATA_ROOT's)."""
    return catalog.data_label(dataset, root)


def job(family: Family, stage: str, dataset: str, root: str, shots: str, seed: str) -> Job:
    """One seed's training or evaluation with `shots` per class."""
    settings = env_settings(family, family.source or dataset, int(shots))
    cfg = config_name(family, settings)
    values = {"TRAINER": family.trainer, "CFG": cfg, "SHOTS": shots, **settings, "SEED": seed,
              "DATASET": folder_name(dataset, root)}
    train_dir = varied(family.train_dir.format(**values), family.train_dir, settings)
    flags = ["--root", root, "--seed", seed, "--trainer", family.trainer, "--dataset-config-file",
             dataset_config(dataset)]
    model = ["--config-file", trainer_config(family, cfg), *family.options.format(**values).split()]
    data = ["DATASET.NUM_SHOTS", shots]
    if os.environ.get("ANCHOR") and family.variant == "anchoropt" and family.protocol != "anchor":
        data += ["TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", os.environ["ANCHOR"]]
    if stage == "train":
        options = ["OPTIM.MAX_EPOCH", values["EPO"], "DATASET.SUBSAMPLE_CLASSES", family.split("train")]
        return Job("train", train_dir, flags + model + data + options)
    trained = training_run(family, family.train_dir.format(**values), train_dir)
    # A run of ours records its settings, which the evaluation takes from it (train.py --eval-only): nothing of the
    # training is repeated, so a training with EXTRA_OPTS needs none here. A folder without a record (the original
    # code's) is evaluated with the family's settings.
    epochs = str(trained.record.get("epochs", values["EPO"])) if trained.record else values["EPO"]
    flags += ["--model-dir", os.path.join(output_root(), trained.folder), "--load-epoch", epochs, "--eval-only"]
    options = data + ["DATASET.SUBSAMPLE_CLASSES", family.split("eval")]
    if family.eval_dir.startswith(IN_TRAINING):  # the training folder already names what was varied
        eval_dir = family.eval_dir.format(**values, TRAIN_DIR=trained.folder)
    else:  # named as if the training's options had been repeated (as EXTRA_OPTS) for the evaluation
        trained_options = _beyond(trained.component, "_".join(setting_parts(family.train_dir, settings)))
        own = [part for part in option_parts() if f"_{part}_" not in f"_{trained_options}_"]
        parts = [*setting_parts(family.eval_dir, settings), *filter(None, [trained_options]), *own]
        eval_dir = with_component(family.eval_dir.format(**values), "_".join(parts))
    argv = flags + options if trained.record else flags + model + options
    return Job("eval", eval_dir, argv, trained.missing)


def _beyond(component: str, prefix: str) -> str:
    """What a folder component names beyond `prefix` (the parts the environment gave it): its options."""
    if prefix and (component == prefix or component.startswith(prefix + "_")):
        return component[len(prefix) + 1:]
    return component


@dataclass(frozen=True)
class TrainingRun:
    """The training run an evaluation job evaluates: its folder under OUTPUT, the folder component it has beyond the
    family's layout when it was found beside the expected one, its record (None: none, or not ours), and why there
    is none to evaluate."""

    folder: str
    component: str = ""
    record: dict | None = None
    missing: str = ""


def training_run(family: Family, plain: str, expected: str) -> TrainingRun:
    """The run in `expected` (the family's training folder `plain`, with what the environment and EXTRA_OPTS name);
    else the one run of the family for this dataset, shots and seed beside it, in a folder that names other options
    (a training with EXTRA_OPTS evaluated without them). Several such runs are an error listing them."""
    if holds_training(expected):
        return TrainingRun(expected, record=training_record(expected))
    parent, seed = os.path.split(plain)
    components = sorted(os.listdir(os.path.join(output_root(), parent))) if os.path.isdir(
        os.path.join(output_root(), parent)) else []
    found = [(c, os.path.join(parent, c, seed)) for c in ["", *components]
             if os.path.join(parent, c, seed) != expected and holds_training(os.path.join(parent, c, seed))]
    if len(found) > 1:
        listed = ", ".join(c or "(none)" for c, _ in found)
        raise UserError(f"{os.path.join(output_root(), parent)} holds several training runs of {seed} (folders of "
                        f"options: {listed}), none of them in {os.path.join(output_root(), expected)}: set EXTRA_OPTS "
                        "to the options of the one to evaluate, as its training had them")
    if found:
        component, folder = found[0]
        return TrainingRun(folder, component.rstrip(os.sep), training_record(folder))
    script = next(stem for stem, stage in family.script_stages().items() if stage == "train")
    return TrainingRun(expected, missing=(
        f"no training run to evaluate in {os.path.join(output_root(), expected)}, nor beside it in a folder of other "
        f"options: run {script}.sh first, with the same DATASET, DATA_ROOT, seeds and SHOTS, EPO, NCTX, ... (an "
        "evaluation needs no EXTRA_OPTS repeated)"))


def holds_training(folder: str) -> bool:
    """Whether `folder` (under OUTPUT) holds a training run: checkpoints, or a record of one."""
    path = os.path.join(output_root(), folder)
    return bool(checkpoint_folders(path)) or training_record(folder) is not None


def training_record(folder: str) -> dict | None:
    """The record of a finished training run in `folder` (under OUTPUT), if it holds one of ours."""
    record = read_record(os.path.join(output_root(), folder))
    return record if record and record.get("kind") == "train" and not identity_problem(record) else None


def zeroshot_jobs(family: Family, args: list[str]) -> list[Job]:
    """scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE ...]: one evaluation per class split."""
    dataset, rest = dataset_and_rest(args)
    cfg = config_name(family)
    name = folder_name(dataset, data_root(rest))
    return [Job("eval", varied(family.eval_dir.format(CFG=cfg, SUBSAMPLE=subsample, DATASET=name), "", {}),
                ["--root", data_root(rest), "--seed", "1", "--trainer", family.trainer, "--dataset-config-file",
                 dataset_config(dataset), "--config-file", trainer_config(family, cfg), "--eval-only",
                 "DATASET.SUBSAMPLE_CLASSES", subsample])
            for subsample in rest[1:] or ["base", "new"]]


def search_jobs(family: Family, args: list[str]) -> list[Job]:
    """scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]: one search, seed 1."""
    if not 1 <= len(args) <= 3:
        raise UserError('usage: scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]')
    dataset, rest = dataset_and_rest(args)
    settings = env_settings(family, dataset)
    values = {"DATASET": folder_name(dataset, data_root(rest)), "CFG": config_name(family),
              "SHOTS": shot_counts(family)[0], **settings}
    bases = ["TRAINER.ATTRIBUTE_SEARCH.BASES", repr(rest[1].split())] if len(rest) == 2 else []
    return [Job("train", varied(family.train_dir.format(**values), family.train_dir, settings, bases),
                ["--root", data_root(rest), "--seed", "1", "--trainer", family.trainer, "--dataset-config-file",
                 dataset_config(dataset), "--config-file", trainer_config(family, values["CFG"]),
                 *family.options.format(**values).split(), "OPTIM.MAX_EPOCH", settings["EPO"],
                 "DATASET.NUM_SHOTS", values["SHOTS"], "DATASET.SUBSAMPLE_CLASSES", family.split("train"), *bases])]


def jobs_of(script: str, args: list[str]) -> list[Job]:
    """The jobs `scripts/<method>/<name>.sh ARGS` runs."""
    found = script_of(script)
    if found.family.protocol == "zeroshot":
        return zeroshot_jobs(found.family, args)
    if found.family.protocol == "search":
        return search_jobs(found.family, args)
    return family_jobs(found.family, found.stage, args)


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
            args = run_spec.build_parser().parse_args(argv)
            planned = run_spec.run_identity(args, run_spec.setup_cfg(args))
        except UserError:
            return False  # train.py says what is wrong with this job
        decision = reuse_decision(job.kind, folder, record, planned)
    if decision.action == "refuse":
        raise UserError(decision.reason)
    if decision.reason:
        print(f"Note: {decision.reason}")
    return decision.action == "skip"


def train_argv(job: Job) -> list[str]:
    """train.py's arguments for a job: its output folder under OUTPUT, its own, the feature cache's and EXTRA_OPTS."""
    cache = [] if os.environ.get("FEATURE_CACHE") == "0" else ["FEATURE_CACHE.ENABLED", "True"]
    return ["--output-dir", os.path.join(output_root(), job.folder), *job.argv, *cache, *extra_options()]


def to_run(job: Job) -> bool:
    """Whether the job must run: not when its folder holds its finished run (FORCE=1 runs it anyway)."""
    if job.missing:
        raise UserError(job.missing)
    argv = train_argv(job)
    folder = argv[1]
    if not os.environ.get("FORCE") and already_done(job, folder, argv):
        print(f"Results are available in {folder}. Skip this job")
        return False
    return True


def launcher() -> list[str]:
    """How train.py is started: PYTHON (default python3), or LAUNCH for a launcher such as torchrun."""
    return shlex.split(os.environ.get("LAUNCH") or os.environ.get("PYTHON", "python3"))


def run(job: Job) -> int:
    command = [*launcher(), str(REPO / "train.py"), *train_argv(job)]
    if os.environ.get("DRY_RUN"):
        print(shlex.join(command))
        return 0
    if not to_run(job):
        return 0
    return subprocess.run(command).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):  # asked for, or called without a script
        print(__doc__, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[:1] == ["--list"]:
        print(listing())
        return 0
    if argv[:1] == ["--write-scripts"]:
        written = write_scripts()
        print("\n".join(written) if written else "Every declared script is in scripts/ already")
        return 0
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
