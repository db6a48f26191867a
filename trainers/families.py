"""Script families: the run scripts of one method variant on one protocol, declared by the method's own module.

A family is `scripts/<method>/<variant>_<protocol>_{train,test}.sh` (e.g. scripts/coop/atprompt_base2new_train.sh):
which trainer and config it runs, the KEY VALUE options it passes, where its outputs go (the original's folder
layout, relative to OUTPUT) and the protocol's hyper-parameters, by default and per dataset. The settings use the
names the scripts take from the environment (EPO, NCTX, WEIGHT, ...); folder templates and options are filled with
them and with DATASET, TRAINER, CFG, SHOTS and SEED. tools/run_protocol.py turns a family into train.py jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets import catalog

# What each protocol trains on and evaluates (DATASET.SUBSAMPLE_CLASSES), and the stem of its evaluation script.
PROTOCOLS: dict[str, dict[str, str]] = {
    "base2new": {"train": "base", "eval": "new", "eval_script": "test", "title": "base-to-novel"},
    "xd": {"train": "all", "eval": "all", "eval_script": "eval", "title": "cross-dataset"},
    "anchor": {"train": "base", "eval": "new", "eval_script": "eval", "title": "AnchorOPT stage I"},
    # All-class few-shot classification: each shot count (SHOTS, default "1 2 4 8 16") trains on all classes; the
    # final test, on the whole test set, is the result (no evaluation script).
    "fewshot": {"train": "all", "title": "few-shot"},
    "zeroshot": {"eval": "", "title": "zero-shot"},
    "search": {"train": "base", "title": "attribute search"},
}
VARIANTS = {"vanilla": "", "atprompt": "+ATPrompt", "anchoropt": "+AnchorOPT"}

# Folder templates of the original's scripts.
B2N = "{DATASET}/{TRAINER}/{CFG}_{SHOTS}shots"
XD = f"{catalog.XD_SOURCE}/{{TRAINER}}/{{CFG}}_{{SHOTS}}shots"
EVAL = "evaluation/{TRAINER}/{CFG}_{SHOTS}shots"
SEED = "/seed{SEED}"
IN_TRAINING = "{TRAIN_DIR}/evaluation"  # an evaluation folder inside the training run's folder
FEWSHOT = "fewshot/"  # the few-shot runs' own tree, apart from the base-to-novel folders of the same settings
FEWSHOT_SHOTS = "1 2 4 8 16"
XD_FOLDERS = XD + "_few_shots/nctx{NCTX}_csc_ctp/CTX_{NCTX}_epo_{EPO}" + SEED  # CoCoOp's and MaPLe's cross-dataset
# The attribute blocks of the original's ATPrompt scripts: one block of NCTX soft tokens per attribute.
ATP = ("TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.N_ATT1 {NCTX} TRAINER.ATPROMPT.N_ATT2 {NCTX} "
       "TRAINER.ATPROMPT.N_ATT3 {NCTX}")
# AnchorOPT's stage II, in the original's folders and options.
ANCHOROPT_PROMPT = "/CTX_{NCTX}_ACTX_{ANCHOR_LEN}_EPO_{EPO}_CE_{PROMPT_CE_WEIGHT}"
ANCHOROPT_PROMPT_OPTIONS = ("TRAINER.ANCHOROPT.N_CTX {NCTX} TRAINER.ANCHOROPT.ANCHOR_LEN {ANCHOR_LEN} "
                            "TRAINER.ANCHOROPT.PROMPT_CE_WEIGHT {PROMPT_CE_WEIGHT} TRAINER.ANCHOROPT.GUMBEL_TEMP 1.0")
ANCHOROPT_RUN = ANCHOROPT_PROMPT + "_KD_W_{KD_WEIGHT}_T_{KD_TEMPERATURE}"
ANCHOROPT_OPTIONS = (ANCHOROPT_PROMPT_OPTIONS + " TRAINER.ANCHOROPT.KD_TEMPERATURE {KD_TEMPERATURE} "
                     "TRAINER.ANCHOROPT.KD_WEIGHT {KD_WEIGHT}")


@dataclass(frozen=True)
class Family:
    """One variant of a method on one protocol. `per_dataset` lists only where a dataset (by config key) differs
    from `settings`; a cross-dataset family trains on `source` (all its classes) and evaluates on the script's
    dataset. `scripts` names the script stems and their stage when they are not `<name>_train` / `<name>_test`."""

    variant: str  # "vanilla", "atprompt", "anchoropt", or "" for a method that has one form
    protocol: str  # a key of PROTOCOLS
    trainer: str  # the trainer name the scripts pass (the original's, e.g. CoOp_ATP)
    config_dir: str  # configs/trainers/<config_dir>/<CFG>.yaml
    cfg: str
    train_dir: str
    eval_dir: str
    options: str  # KEY VALUE options of both stages (the training one also gets OPTIM.MAX_EPOCH)
    settings: Mapping[str, Any] = field(default_factory=dict)
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str | None = None
    per_shots: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # few-shot: settings by shot count
    scripts: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""  # what the family is, for listings and script headers (default from variant and protocol)

    @property
    def name(self) -> str:
        """The family's name in its method's script folder, e.g. "atprompt_base2new"."""
        return "_".join(part for part in (self.variant, self.protocol) if part)

    def script_stages(self) -> dict[str, str]:
        """Script stem -> "train" or "eval"."""
        if self.scripts:
            return dict(self.scripts)
        protocol = PROTOCOLS[self.protocol]
        stages = {f"{self.name}_train": "train"}
        if "eval_script" in protocol:
            stages[f"{self.name}_{protocol['eval_script']}"] = "eval"
        return stages

    def split(self, stage: str) -> str:
        """DATASET.SUBSAMPLE_CLASSES of a stage."""
        return PROTOCOLS[self.protocol][stage]

    def settings_for(self, dataset: str, shots: int | None = None) -> dict[str, Any]:
        """The hyper-parameters on the dataset with config key `dataset` (the source, for cross-dataset training)
        with `shots` per class (few-shot families: their settings for that shot count, CFG among them)."""
        return {**self.settings, **self.per_shots.get(shots, {}), **self.per_dataset.get(dataset, {})}


def atprompt_and_vanilla(protocol: str, trainer: str, config_dir: str, cfg: str, train_dir: str, eval_dir: str,
                         options: str, atprompt: Mapping[str, Any], vanilla: Mapping[str, Any] | None,
                         atprompt_per_dataset: Mapping[str, Mapping[str, Any]] | None = None,
                         source: str | None = None, vanilla_cfg: str | None = None) -> tuple[Family, ...]:
    """The method with ATPrompt (`<trainer>_ATP`, the attribute options added, settings `atprompt`) and, unless
    `vanilla` is None, alone (settings `vanilla`), on one protocol with the same folders."""
    families = [Family("atprompt", protocol, f"{trainer}_ATP", config_dir, cfg, train_dir, eval_dir,
                       f"{options} {ATP}", atprompt, atprompt_per_dataset or {}, source)]
    if vanilla is not None:
        families.append(Family("vanilla", protocol, trainer, config_dir, vanilla_cfg or cfg, train_dir, eval_dir,
                               options, vanilla, {}, source))
    return tuple(families)


def anchoropt_base2new(trainer: str, config_dir: str, cfg: str, settings: Mapping[str, Any],
                       per_dataset: Mapping[str, Mapping[str, Any]], run: str = ANCHOROPT_RUN,
                       options: str = ANCHOROPT_OPTIONS) -> Family:
    """AnchorOPT's stage II on base-to-novel, in the original's folders: the evaluation inside the training folder."""
    return Family("anchoropt", "base2new", f"{trainer}_AnchorOPT", config_dir, cfg, B2N + run + SEED, IN_TRAINING,
                  options, settings, per_dataset)


def fewshot(families: tuple[Family, ...], per_shots: Mapping[int, Mapping[str, Any]] | None = None,
            per_dataset: Mapping[str, Mapping[str, Any]] | None = None, cfg: str = "",
            settings: Mapping[str, Any] | None = None, options: str = "") -> tuple[Family, ...]:
    """The all-class few-shot family of each base-to-novel family: the same trainer, config, options and prompt
    settings, the training folder under `FEWSHOT`. Where the method's authors published few-shot settings, they
    come as `cfg` (a config of their own), `settings` (over the base-to-novel ones) with `options` that pass them,
    `per_shots` (e.g. CoOp's epochs and config by shot count) and `per_dataset` (its exceptions); the base-to-novel
    epochs per dataset do not carry over."""
    families = [f for f in families if f.protocol == "base2new"]
    return tuple(Family(f.variant, "fewshot", f.trainer, f.config_dir, cfg or f.cfg, FEWSHOT + f.train_dir, "",
                        f.options + options, {**f.settings, **(settings or {})},
                        _fewshot_datasets(f.per_dataset, per_dataset or {}), per_shots=per_shots or {},
                        summary=f.summary.replace("base-to-novel", "few-shot"))
                 for f in families)


def _fewshot_datasets(base2new: Mapping[str, Mapping[str, Any]],
                      published: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = set(base2new) | set(published)
    return {key: {**{k: v for k, v in base2new.get(key, {}).items() if k != "EPO"}, **published.get(key, {})}
            for key in keys}


def benchmark_columns(table: Mapping[str, tuple]) -> dict[str, dict[str, Any]]:
    """Per-dataset settings from a paper's table whose columns are the 11 benchmarks in the papers' order
    (ImageNet, Caltech101, OxfordPets, StanfordCars, Flowers102, Food101, FGVCAircraft, SUN397, DTD, EuroSAT,
    UCF101): setting -> 11 values."""
    keys = [info.key for info in catalog.by_role("benchmark")]
    for setting, values in table.items():
        if len(values) != len(keys):
            raise ValueError(f"{setting} has {len(values)} values for the {len(keys)} benchmark datasets")
    return {key: {setting: values[i] for setting, values in table.items()} for i, key in enumerate(keys)}
