"""CoOp (Zhou et al., IJCV 2022), with ATPrompt and AnchorOPT: one set of learnable context tokens for all classes.

The prompt learner and the model are the shared ones (trainers/prompting.py); this module declares the method:
its config node, its script families with the papers' per-dataset settings, and its benchmark cases.
"""

from __future__ import annotations

from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY
from datasets import catalog
from trainers.base import PromptTrainer
from trainers.families import (
    ANCHOROPT_OPTIONS,
    ANCHOROPT_RUN,
    B2N,
    EVAL,
    IN_TRAINING,
    SEED,
    XD,
    Family,
    anchoropt_base2new,
    atprompt_and_vanilla,
    benchmark_columns,
    fewshot,
)
from trainers.method import BenchmarkCase, Method


def config() -> CN:
    """TRAINER.COOP."""
    node = CN()
    node.N_CTX = 16  # number of class-context soft tokens
    node.CSC = False  # class-specific context
    # Word initialisation of the context ("a photo of a"); "" = random. The original's bool default made every
    # string value a yacs type error.
    node.CTX_INIT = ""
    node.PREC = "fp16"  # fp16, fp32, amp or bf16
    node.CLASS_TOKEN_POSITION = "end"  # end, middle or front
    return node


OPTIONS = "TRAINER.COOP.N_CTX {NCTX} TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end"
TRAIN_PROMPT = "/nctx{NCTX}_cscFalse_ctpend"  # the original's training folders say "ctpend", its evaluations "ctp_end"

# AnchorOPT's stage II on CoOp (the original's docs/AnchorOPT.md table; the demo's world has its own row).
ANCHOROPT = benchmark_columns({
    "NCTX": (6, 4, 4, 8, 4, 4, 4, 8, 4, 4, 8),
    "EPO": (20, 100, 100, 100, 100, 20, 100, 20, 100, 100, 100),
    "PROMPT_CE_WEIGHT": (100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 1.0, 100.0),
    "KD_WEIGHT": (1000.0, 1000.0, 1000.0, 100.0, 100.0, 1000.0, 1.0, 1.0, 10.0, 0.0, 1000.0),
    "KD_TEMPERATURE": (1.0, 2.0, 1.0, 4.0, 2.0, 4.0, 4.0, 2.0, 4.0, 1.0, 1.0),
})
ANCHOROPT["attribute_world"] = {"EPO": 20, "PROMPT_CE_WEIGHT": 1.0, "KD_WEIGHT": 1.0}
# AnchorOPT's stage I (the anchor), the same document.
ANCHOR = benchmark_columns({
    "EPO": (10, 100, 100, 40, 100, 20, 20, 20, 100, 100, 100),
    "ANCHOR_MSE_WEIGHT": (1000.0, 1000.0, 1000.0, 100.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0),
})
ANCHOR["attribute_world"] = {"EPO": 20}
ANCHOR_DEFAULTS = {"EPO": 100, "ANCHOR_LEN": 1, "ANCHOR_MSE_WEIGHT": 1000.0}
ANCHOROPT_DEFAULTS = {"EPO": 100, "NCTX": 4, "ANCHOR_LEN": 1, "PROMPT_CE_WEIGHT": 100.0, "KD_WEIGHT": 1000.0,
                      "KD_TEMPERATURE": 1.0}

FAMILIES = (
    # Base-to-novel: the original's docs/ATPrompt.md table (100 epochs, 2 context tokens; ImageNet 10 epochs, DTD 4
    # tokens) and CoOp's own scripts.
    *atprompt_and_vanilla("base2new", "CoOp", "CoOp", "vit_b16", B2N + TRAIN_PROMPT + "/CTX_{NCTX}_epo_{EPO}" + SEED,
                          EVAL + "/nctx{NCTX}_cscFalse_ctp_end/{DATASET}" + SEED, OPTIONS,
                          atprompt={"EPO": 100, "NCTX": 2}, vanilla={"EPO": 200, "NCTX": 16},
                          atprompt_per_dataset={"imagenet": {"EPO": 10}, "dtd": {"NCTX": 4}}),
    # Cross-dataset: the original's evaluation looked for a model folder that training never writes, on half the
    # classes; here it evaluates the ImageNet model on all classes of each target.
    *atprompt_and_vanilla("xd", "CoOp", "CoOp", "vit_b16", XD + TRAIN_PROMPT + "_few_shots/CTX_{NCTX}_epo_{EPO}" + SEED,
                          EVAL + TRAIN_PROMPT + "/{DATASET}" + SEED, OPTIONS, atprompt={"EPO": 10, "NCTX": 4},
                          vanilla=None, source=catalog.XD_SOURCE),
    # AnchorOPT, in the original's folders (evaluations inside the training folder, as its scripts put them; the
    # cross-dataset ones one folder per target, where the original's overwrote each other).
    Family("anchoropt", "anchor", "CoOp_Pretrain_Anchor", "CoOp", "vit_b16",
           B2N + "/ACTX_{ANCHOR_LEN}_EPO_{EPO}_MSE_{ANCHOR_MSE_WEIGHT}" + SEED, IN_TRAINING,
           "TRAINER.ANCHOROPT.ANCHOR_LEN {ANCHOR_LEN} TRAINER.ANCHOROPT.ANCHOR_MSE_WEIGHT {ANCHOR_MSE_WEIGHT} "
           "TRAINER.ANCHOROPT.MAX_TEMPLATE_LENGTH 10", ANCHOR_DEFAULTS, ANCHOR,
           scripts={"anchoropt_pretrain_anchor": "train", "anchoropt_eval_anchor": "eval"},
           summary="CoOp+AnchorOPT, stage I: the anchor learned from the classes' descriptions"),
    anchoropt_base2new("CoOp", "CoOp", "vit_b16", ANCHOROPT_DEFAULTS, ANCHOROPT),
    Family("anchoropt", "xd", "CoOp_AnchorOPT", "CoOp", "vit_b16",
           f"{catalog.XD_SOURCE}/{{TRAINER}}_cross/{{CFG}}_{{SHOTS}}shots" + ANCHOROPT_RUN + SEED,
           IN_TRAINING + "/{DATASET}", ANCHOROPT_OPTIONS,
           {"EPO": 20, "NCTX": 4, "ANCHOR_LEN": 1, "PROMPT_CE_WEIGHT": 1.0, "KD_WEIGHT": 1.0, "KD_TEMPERATURE": 1.0},
           source=catalog.XD_SOURCE),
)
# All-class few-shot: CoOp's paper (50 epochs for 1-2 shots, 100 for 4-8, 200 for 16; ImageNet 50 throughout), for
# every variant.
FAMILIES += fewshot(FAMILIES, per_shots={1: {"CFG": "vit_b16_ep50", "EPO": 50}, 2: {"CFG": "vit_b16_ep50", "EPO": 50},
                                         4: {"CFG": "vit_b16_ep100", "EPO": 100},
                                         8: {"CFG": "vit_b16_ep100", "EPO": 100}, 16: {"CFG": "vit_b16", "EPO": 200}},
                    per_dataset={"imagenet": {"CFG": "vit_b16_ep50", "EPO": 50}})


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """`TRAINER.COOP.*` configures the context; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    METHOD = Method(
        "CoOp", "coop", "COOP", order=10, config=config, families=FAMILIES,
        benchmark=(BenchmarkCase("train", {0: 1.5, 500: 3.0}), BenchmarkCase("eval", {0: 8.0})),
        paper={"CoOp": (82.69, 63.22, 71.66), "CoOp_ATP": (82.68, 68.04, 74.65),
               "CoOp_AnchorOPT": (81.24, 76.27, 78.68)},
        summary="one set of learnable context tokens for all classes",
    )

    @classmethod
    def learner_options(cls, cfg: CN) -> dict:
        opts = cls.options(cfg)
        return {"csc": opts.CSC, "class_position": opts.CLASS_TOKEN_POSITION}
