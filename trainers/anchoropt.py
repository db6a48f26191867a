"""AnchorOPT (Li et al., "Towards Optimizing Dynamic Anchors for Adaptive Prompt Learning", arXiv 2511.21188): a
learned anchor token among a method's soft tokens, at learned positions; a switch on any prompt learner here.

Stage I (`trainers/anchor_pretrain.py`) learns the anchor in `"<anchor> of <class name>."` so that its text
feature matches LLM descriptions of the class. Stage II turns it on for a method (`TRAINER.ANCHOROPT.USE_ANCHOROPT`,
or the original's `<Method>_AnchorOPT` names): the class context becomes `P @ [ctx; anchor]` (the context and the
frozen anchor in a learned order, trainers/layout.py `Anchoring`), and a second, frozen branch scores the images
against the anchor prompt alone. Training adds a distillation of the normal branch towards the average of both
branches; the test uses the normal branch on the classes the model was trained on and the average of both on
others. docs/AnchorOPT.md has the equations, the settings and where this differs from the original.
"""

from __future__ import annotations

import functools
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode
from yacs.config import CfgNode as CN  # noqa: N817

from clip.model import CLIP
from dassl.utils.errors import UserError
from trainers import anchor_files
from trainers.backbone import backbone_identity
from trainers.layout import Anchoring, anchor_layout
from trainers.original import name_turns_on_anchoropt, replay_clip_construction
from trainers.prompting import LaidOutPrompts, Outputs, PromptedCLIP

# The anchor a checkpoint carries (a buffer of the normal prompt learner).
ANCHOR_KEY = re.compile(r"(^|\.)anchor$")
SAVE_NAME = "normal_prompt_learner"  # the original's checkpoint folder of stage II


def config_node() -> CN:
    """TRAINER.ANCHOROPT: the original's keys and defaults, then the new ones (docs/AnchorOPT.md)."""
    node = CN()
    # Turns AnchorOPT on for a method (the *_AnchorOPT trainer names always use it: the original never read this).
    node.USE_ANCHOROPT = False
    node.N_CTX = 4  # learnable context tokens arranged with the anchor (replaces <method>.N_CTX)
    node.ANCHOR_LEN = 1  # anchor tokens
    node.GUMBEL_TEMP = 1.0  # temperature of the Gumbel-softmax over the position logits
    node.KD_TEMPERATURE = 1.0
    node.ANCHOR_MSE_WEIGHT = 10.0  # stage I: weight of the anchor-to-description loss
    node.PROMPT_CE_WEIGHT = 1.0
    node.KD_WEIGHT = 1.0  # 0 drops the distillation term (and KD_TEMPERATURE is then unused)
    node.MAX_TEMPLATE_LENGTH = 10  # stage I: descriptions used per class (its first ones)
    # New: the stage-I description file ({class name: [sentence, ...]}); "" = DESCRIPTIONS_DIR/<the dataset's file>.
    node.DESCRIPTIONS = ""
    node.DESCRIPTIONS_DIR = "templates"  # new: where the per-dataset description files are
    # New: the anchor of stage II: an anchor file of ours, an original (Dassl) anchor checkpoint, or a stage-I output
    # folder; "" = ANCHOR_DIR/<the dataset's folder>/anchor_prompt_learner/model.pth.tar, the original's layout.
    node.ANCHOR_WEIGHTS = ""
    node.ANCHOR_DIR = "anchor_weights"  # new
    # New: the original's test-time Gumbel noise (a random arrangement per batch) instead of the arrangement the
    # position logits choose.
    node.EVAL_GUMBEL = False
    # New: pool the normal branch's text feature ANCHOR_LEN tokens before its EOT token, as the original did (it
    # read the "." token); False pools at EOT.
    node.ORIGINAL_EOT = False
    # New: evaluate a model with the evaluated dataset's own anchor file, as the original did in cross-dataset
    # evaluation; False uses the anchor the model was trained with (saved in its checkpoint).
    node.TARGET_ANCHOR = False
    # New: MaPLe+AnchorOPT's deep text layers read the anchor's hidden state one position before its slot, as the
    # original did (at the start-of-text token when the anchor is first); False reads it at its slot.
    node.ORIGINAL_DEEP_ANCHOR = False
    # New: CoCoOp+AnchorOPT. The original kept the position logits at their random start (only their Gumbel samples
    # vary, a new arrangement every step) and, by an omission in its optimiser, never updated the meta-net.
    node.COCOOP_LEARN_POSITIONS = False  # True: learn them, as the other methods do
    node.COCOOP_TRAIN_META_NET = True  # False: the original's untrained meta-net
    return node


def enabled(cfg: CfgNode) -> bool:
    """Whether the run uses AnchorOPT: the switch, or an original `<Method>_AnchorOPT` name (trainers/original.py)."""
    return cfg.TRAINER.ANCHOROPT.USE_ANCHOROPT or name_turns_on_anchoropt(cfg.TRAINER.NAME)


def anchoring(cfg: CfgNode) -> Anchoring | None:
    """How the class context holds the anchor (None without AnchorOPT); its settings are checked here."""
    if not enabled(cfg):
        return None
    opts = cfg.TRAINER.ANCHOROPT
    check_settings(cfg)
    return Anchoring(opts.ANCHOR_LEN, opts.GUMBEL_TEMP, opts.EVAL_GUMBEL, opts.ORIGINAL_EOT)


def context(cfg: CfgNode, n_ctx: int, ctx_init: str, attributes: list) -> tuple[int, str, Anchoring | None]:
    """A method's context length and word initialisation (its own N_CTX and CTX_INIT) and AnchorOPT's anchoring:
    with AnchorOPT the context is TRAINER.ANCHOROPT.N_CTX tokens, and with it or ATPrompt it starts random, as in
    the papers and the original code."""
    anchors = anchoring(cfg)
    if anchors:
        n_ctx = cfg.TRAINER.ANCHOROPT.N_CTX
    if (attributes or anchors) and ctx_init:
        print(f"Note: CTX_INIT is ignored with {'ATPrompt' if attributes else 'AnchorOPT'}; the context is {n_ctx} "
              "random tokens, as in the paper")
        ctx_init = ""
    return n_ctx, ctx_init, anchors


def check_settings(cfg: CfgNode) -> None:
    opts = cfg.TRAINER.ANCHOROPT
    if opts.ANCHOR_LEN < 1:
        raise UserError(f"TRAINER.ANCHOROPT.ANCHOR_LEN is {opts.ANCHOR_LEN}: the anchor needs at least 1 token")
    if opts.N_CTX < 0:
        raise UserError(f"TRAINER.ANCHOROPT.N_CTX is {opts.N_CTX}: the number of context tokens must be 0 or more")
    if opts.GUMBEL_TEMP <= 0:
        raise UserError(f"TRAINER.ANCHOROPT.GUMBEL_TEMP is {opts.GUMBEL_TEMP}: the Gumbel-softmax needs a "
                        "temperature > 0 (the original's scripts use 1.0)")
    if opts.KD_WEIGHT != 0 and opts.KD_TEMPERATURE <= 0:
        raise UserError(f"TRAINER.ANCHOROPT.KD_TEMPERATURE is {opts.KD_TEMPERATURE} with KD_WEIGHT "
                        f"{opts.KD_WEIGHT}: the distillation divides by the temperature; set it > 0, or set "
                        "KD_WEIGHT 0.0 to train without distillation")


def seen_classes(cfg: CfgNode, trained: dict | None = None) -> bool:
    """Whether the evaluated classes are those the model was trained on (the test then uses the normal branch
    alone): base classes, or the dataset and classes of training (`trained`: its settings, when known)."""
    split = cfg.DATASET.SUBSAMPLE_CLASSES
    if split == "base":
        return True
    if trained is None:
        return split == "all"  # a training run tests the classes it trains on
    return trained.get("DATASET.NAME") == cfg.DATASET.NAME and trained.get("DATASET.SUBSAMPLE_CLASSES") == split


# --------------------------------------------------------------------------------------------------------------
# The anchor prompt
# --------------------------------------------------------------------------------------------------------------
class AnchorPrompts(LaidOutPrompts):
    """`"<anchor> of <class name>."` for every class; the anchor tokens [L, D] are given to `forward`."""

    def __init__(self, clip_model: CLIP, classnames: list[str], anchor_len: int) -> None:
        super().__init__(clip_model, anchor_layout(classnames, anchor_len))
        self.anchor_len = anchor_len

    def forward(self, anchor: torch.Tensor) -> torch.Tensor:
        return self.assemble(anchor.to(self.token_embeds.dtype))


class AnchorPromptLearner(AnchorPrompts):
    """Stage I's prompt learner: the anchor prompt with a learnable anchor, `anchor_ctx_1` [L, D] (the original's
    name; normal init, std 0.02, in the CLIP dtype)."""

    def __init__(self, clip_model: CLIP, classnames: list[str], anchor_len: int) -> None:
        super().__init__(clip_model, classnames, anchor_len)
        width = clip_model.ln_final.weight.shape[0]
        self.anchor_ctx_1 = nn.Parameter(nn.init.normal_(torch.empty(anchor_len, width, dtype=clip_model.dtype),
                                                         std=0.02))

    def forward(self) -> torch.Tensor:
        return super().forward(self.anchor_ctx_1)

    def get_extra_state(self) -> dict:
        return {"anchor_len": self.anchor_len}

    def set_extra_state(self, state: dict) -> None:
        if state.get("anchor_len", self.anchor_len) != self.anchor_len:
            raise UserError(f"the checkpoint's anchor has {state['anchor_len']} tokens, the model "
                            f"{self.anchor_len} (TRAINER.ANCHOROPT.ANCHOR_LEN)")


# --------------------------------------------------------------------------------------------------------------
# Stage II: the anchor branch and the loss, on any PromptedCLIP
# --------------------------------------------------------------------------------------------------------------
def distillation(logits: torch.Tensor, anchor_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(ens / T) || softmax(logits / T)) * T^2, summed and divided by the number of logits, towards the
    (detached) average `ens` of both branches; as the original computed it."""
    ensemble = ((logits + anchor_logits) / 2).detach()
    kl = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(ensemble / temperature, dim=1),
                  reduction="sum")
    return kl * temperature * temperature / ensemble.numel()


class AnchorBranch:
    """AnchorOPT's stage II as a mixin before a `PromptedCLIP` class (see `anchored`): the frozen anchor branch, the
    loss, and the test rule. The anchor is the prompt learner's (`prompt_learner.anchor`), so both branches use
    the one the checkpoint carries; its text features are computed once and kept while it does not change."""

    def __init__(self, *args, anchor_prompts: AnchorPrompts, ce_weight: float, kd_weight: float,
                 kd_temperature: float, seen: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.anchor_prompts = anchor_prompts
        self.ce_weight, self.kd_weight, self.kd_temperature = ce_weight, kd_weight, kd_temperature
        self.seen_classes = seen  # the test rule: normal branch alone (True), or the average of both
        self._anchor_cache: tuple[tuple, torch.Tensor] | None = None

    def anchor_text_features(self) -> torch.Tensor:
        """Normalised text features [n_cls, E] of the anchor prompts; no gradient (the anchor is frozen)."""
        anchor = self.prompt_learner.anchor_tokens()
        key = (anchor.data_ptr(), anchor._version, anchor.device, torch.is_autocast_enabled(anchor.device.type))
        if self._anchor_cache is None or self._anchor_cache[0] != key or not self.cache_text:
            with torch.no_grad():
                features = self.text_encoder(self.anchor_prompts(anchor), self.anchor_prompts.eot)
            self._anchor_cache = (key, F.normalize(features, dim=-1))
        return self._anchor_cache[1]

    def anchor_logits(self, image: torch.Tensor | None, image_features: torch.Tensor) -> torch.Tensor:
        """The anchor branch's logits, from the normal branch's `image_features` (`PromptedCLIP.anchor_image_features`
        says which image features the anchor branch scores)."""
        features = self.anchor_image_features(image, image_features)
        return self.logit_scale.exp() * features @ self.anchor_text_features().t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.test_logits(image, self.image_features(image))

    def logits_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        """`forward` from cached image features: there is no image, which the feature cache only allows for models
        whose anchor features derive from the normal ones (`PromptedCLIP.TEST_LOGITS_FROM_ENCODER`)."""
        return self.test_logits(None, self.features_from_encoded(encoded))

    def test_logits(self, image: torch.Tensor | None, image_features: torch.Tensor) -> torch.Tensor:
        """The test rule: the normal branch's logits on seen classes, the average of both branches on others."""
        logits = self.class_logits(image_features)
        if self.seen_classes:
            return logits
        return (logits + self.anchor_logits(image, image_features)) / 2

    def forward_train(self, image: torch.Tensor) -> Outputs:
        outputs = super().forward_train(image)
        if not self.kd_weight:  # only the distillation reads the anchor branch in training
            return outputs
        return {**outputs, "anchor_logits": self.anchor_logits(image, outputs["image_features"])}

    def loss(self, outputs: Outputs, label: torch.Tensor) -> torch.Tensor:
        """PROMPT_CE_WEIGHT x the method's loss (cross-entropy for CoOp) + KD_WEIGHT x the distillation."""
        loss = self.ce_weight * super().loss(outputs, label)
        if self.kd_weight:
            loss = loss + self.kd_weight * distillation(outputs["logits"], outputs["anchor_logits"],
                                                        self.kd_temperature)
        return loss


@functools.cache
def anchored(model_class: type[PromptedCLIP]) -> type[PromptedCLIP]:
    """`model_class` with AnchorOPT's anchor branch."""
    return type(f"{model_class.__name__}WithAnchor", (AnchorBranch, model_class), {"__doc__": AnchorBranch.__doc__})


def anchor_prompts(cfg: CfgNode, clip_model: CLIP, classnames: list[str],
                   second_clip: str | None = "after") -> AnchorPrompts | None:
    """The anchor branch's prompts (None without AnchorOPT). Built before the method's prompt learner, making the
    random draws the original made here: the anchor's initial values (replaced by the loaded anchor) and, `before`
    or `after` them, building the second CLIP it loaded (CoOp's anchor learner loaded one after, MaPLe's trainer one
    before; CoCoOp's none)."""
    if not enabled(cfg):
        return None
    length = cfg.TRAINER.ANCHOROPT.ANCHOR_LEN
    prompts = AnchorPrompts(clip_model, classnames, length)
    if cfg.TRAINER.ORIGINAL_DRAWS:
        if second_clip == "before":
            replay_clip_construction(clip_model)
        nn.init.normal_(torch.empty(length, clip_model.ln_final.weight.shape[0], dtype=clip_model.dtype), std=0.02)
        if second_clip == "after":
            replay_clip_construction(clip_model)
    return prompts


def build_model(model_class: type[PromptedCLIP], cfg: CfgNode, prompts: AnchorPrompts | None, *args,
                distill: bool = True, **kwargs) -> PromptedCLIP:
    """`model_class(*args, **kwargs)`, with the anchor branch when `prompts` are given (AnchorOPT on); `distill`
    False: a method whose AnchorOPT variant has no distillation term (DePT). The anchor is read now when its file
    exists, else it must come from the checkpoint an evaluation loads."""
    if prompts is None:
        return model_class(*args, **kwargs)
    opts = cfg.TRAINER.ANCHOROPT
    if not distill and opts.KD_WEIGHT:
        print(f"Note: {model_class.__name__} with AnchorOPT trains without distillation, as the original; "
              f"TRAINER.ANCHOROPT.KD_WEIGHT ({opts.KD_WEIGHT}) is not used")
    model = anchored(model_class)(*args, anchor_prompts=prompts, ce_weight=opts.PROMPT_CE_WEIGHT,
                                  kd_weight=opts.KD_WEIGHT if distill else 0.0, kd_temperature=opts.KD_TEMPERATURE,
                                  seen=seen_classes(cfg), **kwargs)
    learner = model.prompt_learner
    try:
        path = anchor_files.find_anchor(anchor_files.anchor_path(cfg))
    except UserError as err:
        learner.anchor_missing = err.message
        return model
    anchor, trained_on = anchor_files.read_anchor(path, prompts.anchor_len, learner.anchor.shape[-1])
    if trained_on is not None:
        anchor_files.check_backbone(path, trained_on, backbone_identity(cfg))
    learner.set_anchor(anchor, path)
    print(f"AnchorOPT: the anchor ({prompts.anchor_len} token{'s' * (prompts.anchor_len != 1)}) from {path}")
    return model
