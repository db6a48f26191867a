"""AnchorOPT's input files: the class descriptions of stage I and the anchors stage II starts from.

Descriptions: a JSON object `{class name: [sentence, ...]}` (the original's `templates/*_prompts_full.json`, or
`gpt_query.py --descriptions`); class names are the dataset's, with spaces for underscores.

Anchors, in three forms, all read without unpickling code:
- ours, `anchor.pth` (written by stage I): the anchor tokens [L, D] in fp32 and what they were trained with;
- the original's released `anchor_weights/<Dataset>/anchor_prompt_learner/model.pth.tar`: a Dassl checkpoint whose
  `anchor_ctx_1` is the anchor (fp16); its fixed-token buffers and pickled scheduler are not needed;
- a stage-I output folder (ours or the original's), holding either of the above.
"""

from __future__ import annotations

import json
import os

import torch
from yacs.config import CfgNode

from dassl.utils import atomic_write, load_checkpoint
from dassl.utils.errors import UserError
from datasets import catalog
from trainers.layout import clean_classname

ANCHOR_FILE = "anchor.pth"
ANCHOR_FORMAT = "atprompt-anchoropt-anchor/1"
ANCHOR_PARAM = "anchor_ctx_1"  # the stage-I parameter, in our checkpoints and the original's
STAGE_ONE_FOLDER = "anchor_prompt_learner"


def _dataset_file(cfg: CfgNode, field: str, key: str, what: str) -> str:
    """The catalog's per-dataset file name, or an error naming the key that gives the file directly."""
    info = catalog.by_name(cfg.DATASET.NAME)
    name = getattr(info, field, "") if info else ""
    if not name:
        known = ", ".join(i.name for i in catalog.DATASETS if getattr(i, field))
        raise UserError(f"there is no default {what} for dataset {cfg.DATASET.NAME}: set TRAINER.ANCHOROPT.{key} "
                        f"(defaults exist for {known})")
    return name


# -- descriptions ------------------------------------------------------------------------------------------------
def descriptions_path(cfg: CfgNode) -> str:
    """TRAINER.ANCHOROPT.DESCRIPTIONS, else DESCRIPTIONS_DIR/<the dataset's file> (the original's file names)."""
    opts = cfg.TRAINER.ANCHOROPT
    if opts.DESCRIPTIONS:
        return opts.DESCRIPTIONS
    return os.path.join(opts.DESCRIPTIONS_DIR, _dataset_file(cfg, "descriptions", "DESCRIPTIONS", "description file"))


def read_descriptions(path: str, classnames: list[str], limit: int) -> list[list[str]]:
    """The first `limit` sentences of each class, in class order. A class with fewer keeps all it has."""
    how = ("write one with `python3 gpt_query.py --descriptions`, or use the original's templates/*_prompts_full.json "
           "(docs/AnchorOPT.md)")
    if not os.path.isfile(path):
        raise UserError(f"no class-description file {path}: {how}, and point TRAINER.ANCHOROPT.DESCRIPTIONS (or "
                        "DESCRIPTIONS_DIR) at it")
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path} is not a readable JSON file ({err}); {how}") from err
    if not isinstance(table, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v) for v in table.values()
    ):
        raise UserError(f'{path} is not a JSON object {{"class name": ["sentence", ...]}} with at least one '
                        f"non-empty sentence per class; {how}")
    if limit < 1:
        raise UserError(f"TRAINER.ANCHOROPT.MAX_TEMPLATE_LENGTH is {limit}: use at least 1 description per class")
    names = [clean_classname(name) for name in classnames]
    missing = [name for name in names if name not in table]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{path} has no descriptions of {len(missing)} of the {len(names)} classes ({shown}): it is "
                        f"for other classes, or incomplete; complete it ({how})")
    return [table[name][:limit] for name in names]


# -- anchors -----------------------------------------------------------------------------------------------------
def anchor_path(cfg: CfgNode) -> str:
    """TRAINER.ANCHOROPT.ANCHOR_WEIGHTS, else the original's layout ANCHOR_DIR/<Dataset>/anchor_prompt_learner/
    model.pth.tar (the ImageNet anchor serves its variants). The path may not exist (`find_anchor` says so)."""
    opts = cfg.TRAINER.ANCHOROPT
    if opts.ANCHOR_WEIGHTS:
        return opts.ANCHOR_WEIGHTS
    folder = _dataset_file(cfg, "anchor_folder", "ANCHOR_WEIGHTS", "anchor")
    return os.path.join(opts.ANCHOR_DIR, folder, STAGE_ONE_FOLDER, "model.pth.tar")


def find_anchor(path: str) -> str:
    """The anchor file `path` names: the file itself, or the anchor in a stage-I output folder."""
    if os.path.isdir(path):
        stage_one = os.path.join(path, STAGE_ONE_FOLDER)
        candidates = [os.path.join(path, ANCHOR_FILE), os.path.join(stage_one, "model.pth.tar")]
        if os.path.isdir(stage_one):
            kept = sorted((f for f in os.listdir(stage_one) if f.startswith("model.pth.tar-")),
                          key=lambda f: int(f.rsplit("-", 1)[1]) if f.rsplit("-", 1)[1].isdigit() else -1)
            candidates += [os.path.join(stage_one, f) for f in reversed(kept)]
        for candidate in candidates:
            if os.path.isfile(candidate):
                return candidate
        raise UserError(f"{path} holds no anchor (looked for {ANCHOR_FILE} and {STAGE_ONE_FOLDER}/model.pth.tar*)")
    if not os.path.isfile(path):
        raise UserError(
            f"no anchor at {path}: train one with scripts/coop/anchoropt_pretrain_anchor.sh (stage I) or get the "
            "original's released anchor_weights/, then set TRAINER.ANCHOROPT.ANCHOR_WEIGHTS to the file or the "
            "stage-I output folder (or ANCHOR_DIR to the folder of the per-dataset anchors)"
        )
    return path


def read_anchor(path: str, length: int, width: int) -> tuple[torch.Tensor, dict[str, str] | None]:
    """The anchor tokens [length, width] (fp32) of an anchor file of ours or the original's, and the backbone it was
    trained on (None when the file does not say: the original's)."""
    content = load_checkpoint(path)
    trained_on = None
    if isinstance(content, dict) and content.get("format") == ANCHOR_FORMAT:
        anchor, trained_on = content["anchor"], content["backbone"]
    elif isinstance(content, dict) and ANCHOR_PARAM in content.get("state_dict", {}):
        anchor = content["state_dict"][ANCHOR_PARAM]
    else:
        raise UserError(f"{path} is not an anchor file: it has neither our '{ANCHOR_FORMAT}' format nor a "
                        f"'{ANCHOR_PARAM}' weight (the original's stage-I checkpoints)")
    if not isinstance(anchor, torch.Tensor) or not anchor.is_floating_point():
        raise UserError(f"{path} is not an anchor file: its anchor is {type(anchor).__name__}, not a float tensor")
    if not bool(torch.isfinite(anchor).all()):  # training from it would diverge, and be blamed on OPTIM.LR
        raise UserError(f"the anchor in {path} holds values that are not finite (NaN or inf): the stage-I run that "
                        "wrote it diverged, or the file is damaged; train the anchor again (stage I) or use another")
    if tuple(anchor.shape) != (length, width):
        raise UserError(f"the anchor in {path} is [{', '.join(map(str, anchor.shape))}] but this model takes "
                        f"[{length}, {width}] (TRAINER.ANCHOROPT.ANCHOR_LEN x the text width of "
                        "MODEL.BACKBONE.NAME): use an anchor trained with these")
    return anchor.float(), trained_on


def check_backbone(path: str, trained_on: dict[str, str], backbone: dict[str, str]) -> None:
    """An anchor only means something to the CLIP it was trained on."""
    if trained_on["sha256"] != backbone["sha256"]:
        raise UserError(f"the anchor {path} was trained on {trained_on['name']} (weights sha256 "
                        f"{trained_on['sha256'][:12]}...), not on {backbone['name']} (sha256 "
                        f"{backbone['sha256'][:12]}...): use an anchor of this backbone")


def write_anchor(path: str, anchor: torch.Tensor, about: dict) -> None:
    """Our anchor file: the anchor [L, D] in fp32 with `about` (backbone, dataset, classes, settings, epoch)."""
    content = {"format": ANCHOR_FORMAT, "anchor": anchor.detach().float().cpu(), **about}
    atomic_write(path, lambda tmp: torch.save(content, tmp))
