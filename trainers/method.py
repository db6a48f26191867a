"""What a method says about itself: one `Method` card, the `METHOD` attribute of its trainer class.

A method module (trainers/<method>.py) holds the whole method: its model, its trainer, and the card, which declares
its config node (keys, defaults, comments), its script families with their per-dataset settings
(trainers/families.py), its place and the papers' numbers in the result tables, its benchmark cases, and the random
draws its original implementation made. The protocol runner, the result tables and the benchmark read the cards of
the registered trainers (`methods()`), so adding a method is adding its module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yacs.config import CfgNode

from dassl.engine import TRAINER_REGISTRY
from dassl.engine.records import settings_of
from trainers.families import Family, fewshot

# The names a prompt learner's results take with its plug-ins (trainers/base.py `method_name`).
PLUGIN_SUFFIXES = ("", "_ATP", "_AnchorOPT", "_ATP_AnchorOPT")


@dataclass(frozen=True)
class OriginalDraws:
    """Random draws the original code of a method made for things this one does not build, replayed (with
    TRAINER.ORIGINAL_DRAWS) so that a seed gives the original's numbers (trainers/original.py).

    `anchor_second_clip`: where its AnchorOPT variant built a second CLIP relative to the anchor's initial values
    ("before", "after", or None for none); `clips_after_learner`: how many more CLIPs it built after its prompt
    learner (KgCoOp one, for the template features; PromptSRC two, its frozen copies); `prompts_in_clip`: whether it
    drew its deep prompts while building CLIP (IVLP, PromptSRC), so that its prompt learner replays that
    construction (trainers/original.py `replay_prompted_construction`) and loading CLIP draws nothing."""

    anchor_second_clip: str | None = "after"
    clips_after_learner: int = 0
    prompts_in_clip: bool = False


@dataclass(frozen=True)
class BenchmarkCase:
    """A row of tools/benchmark.py: one kind of step ("train", "eval" or "search") of the method, fast against the
    plain computation. `targets` maps a class count to the speed-up expected from that many classes up (None: no
    target). `options` are config overrides; `plain_options` and `plain_prec` change the plain path only; `batch`
    and `eval_batches` override the run's; `prepare(model, clip_model, classnames, seed)` gives a built model what
    its trainer would read from files. A prompt learner's cases are also run with AnchorOPT on (`anchoropt`)."""

    kind: str
    targets: Mapping[int, float | None]
    name: str = ""  # default: <method>-<kind>
    batch: int | None = None
    eval_batches: int | None = None
    options: tuple = ()
    plain_options: tuple = ()
    plain_prec: str | None = None
    compare: bool = True  # whether both paths compute the same logits
    note: str = ""
    prepare: Callable | None = None
    anchoropt: bool = True


# A prompt learner's training step, timed without a target, and its evaluation, expected 8x faster than the plain
# computation (which encodes the prompts of every class for every image batch).
TRAIN_AND_EVAL = (BenchmarkCase("train", {0: None}), BenchmarkCase("eval", {0: 8.0}))


@dataclass(frozen=True)
class Method:
    """A method's declarations. `node` is the TRAINER.<node> it reads (its PREC among them); `config` gives that
    node's keys with their defaults, or is None when the node is another method's (a method built on it). A run
    reads its method's node, the nodes in `reads` and the shared ones (TRAINER.ATPROMPT, ANCHOROPT, ...); the other
    methods' nodes are not part of what decides its numbers (`unread_nodes`)."""

    name: str  # its label in result tables (plug-ins add _ATP / _AnchorOPT)
    scripts: str  # its folder under scripts/
    node: str
    order: int  # its row in the result tables, in the papers' order
    config: Callable[[], CfgNode] | None = None
    reads: tuple[str, ...] = ()  # other methods' nodes it reads (the attribute search: CoOp's prompt keys)
    families: tuple[Family, ...] = ()
    benchmark: tuple[BenchmarkCase, ...] = ()
    draws: OriginalDraws = OriginalDraws()
    paper: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)  # label -> Base / Novel / HM
    plugins: bool = True  # a prompt learner: ATPrompt and AnchorOPT apply to it
    anchoropt_distills: bool = True  # its AnchorOPT variant adds the distillation term (DePT's does not)
    needs_vit: bool = False  # it prompts the vision transformer (no ResNet backbone)
    summary: str = ""  # one line for listings

    def __post_init__(self) -> None:
        # Every method runs the all-class few-shot protocol: with its authors' settings where its module declares
        # them (CoOp, PromptSRC), else with its base-to-novel ones (trainers/families.py `fewshot`).
        if not any(family.protocol == "fewshot" for family in self.families):
            object.__setattr__(self, "families", self.families + fewshot(self.families))

    def labels(self) -> list[str]:
        """Its names in the result tables, in order."""
        return [self.name + suffix for suffix in PLUGIN_SUFFIXES] if self.plugins else [self.name]


def methods() -> list[tuple[type, Method]]:
    """(trainer class, card) of every registered method, in table order; aliases count once."""
    found = {}
    for name in TRAINER_REGISTRY.registered_names():
        trainer = TRAINER_REGISTRY.get(name)
        if "METHOD" in vars(trainer):
            found[trainer] = trainer.METHOD
    return sorted(found.items(), key=lambda item: (item[1].order, item[1].name))


def config_nodes() -> dict[str, CfgNode]:
    """TRAINER.<node> -> its keys and defaults, for every method that declares its node."""
    return {card.node: card.config() for _, card in methods() if card.config is not None}


def method_nodes() -> set[str]:
    """The TRAINER.<node> names that belong to a method."""
    return {card.node for _, card in methods()}


def unread_nodes(trainer: type) -> list[str]:
    """The config nodes and keys a run of `trainer` never reads: every other method's node, the nodes that only hold
    the original's keys for a method, and the original's keys nothing reads (trainers/original.py)."""
    from trainers.original import IGNORED_KEYS, ORIGINAL_ONLY_NODES

    card = card_of(trainer)
    if card is None:
        return []
    own = {card.node, *card.reads}
    return [f"TRAINER.{node}" for node in sorted(method_nodes() - own)] + [*ORIGINAL_ONLY_NODES, *IGNORED_KEYS]


def run_settings(cfg: CfgNode, kind: str, trainer: type) -> dict[str, Any]:
    """The settings that decide the numbers of a run of `trainer` (dassl/engine/records.py): the config less the
    nodes it never reads."""
    return settings_of(cfg, kind, unread_nodes(trainer))


def card_of(trainer: type) -> Method | None:
    """The card of a trainer class (or of the method it is built on), None for a trainer without one."""
    return getattr(trainer, "METHOD", None)


def table_order() -> list[str]:
    """Every method's result-table labels, in order."""
    return [label for _, card in methods() for label in card.labels()]


def paper_averages() -> dict[str, tuple[float, float, float]]:
    """Base / Novel / HM averages over the 11 datasets as the papers report them, by table label."""
    return {label: values for _, card in methods() for label, values in card.paper.items()}

