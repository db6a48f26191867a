"""CoOp (Zhou et al., IJCV 2022), with ATPrompt and AnchorOPT: one set of learnable context tokens for all classes."""

from dassl.engine import TRAINER_REGISTRY
from trainers import anchoropt
from trainers.base import PromptTrainer
from trainers.layout import unused_attribute_blocks
from trainers.prompting import PromptedCLIP, PromptLearner


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """`TRAINER.COOP.*` configures the context; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    @classmethod
    def build_custom_clip(cls, cfg, clip_model, classnames, attributes):
        branch = anchoropt.anchor_prompts(cfg, clip_model, classnames)
        learner = cls.build_prompt_learner(cfg, clip_model, classnames, attributes)
        return anchoropt.build_model(PromptedCLIP, cfg, branch, clip_model, learner)

    @classmethod
    def build_prompt_learner(cls, cfg, clip_model, classnames, attributes) -> PromptLearner:
        """CoOp's prompt learner from TRAINER.COOP.* (DePT and KgCoOp learn the same prompt); with AnchorOPT the
        context is TRAINER.ANCHOROPT.N_CTX random tokens arranged with the anchor."""
        opts = cfg.TRAINER.COOP
        n_ctx, ctx_init, anchoring = anchoropt.context(cfg, opts.N_CTX, opts.CTX_INIT or "", attributes)
        return PromptLearner(
            clip_model,
            classnames,
            n_ctx=None if ctx_init else n_ctx,
            attributes=attributes,
            ctx_init=ctx_init,
            csc=opts.CSC,
            class_position=opts.CLASS_TOKEN_POSITION,
            single_token_words=cfg.TRAINER.ATPROMPT.SINGLE_TOKEN_WORDS,
            unused_blocks=unused_attribute_blocks(cfg, attributes),
            anchoring=anchoring,
        )


# The original's names: like the original, CoOp_ATP uses ATPrompt only with TRAINER.ATPROMPT.USE_ATPROMPT True;
# CoOp_AnchorOPT always uses AnchorOPT (the original's never read TRAINER.ANCHOROPT.USE_ANCHOROPT).
TRAINER_REGISTRY.register(CoOp, name="CoOp_ATP")
TRAINER_REGISTRY.register(CoOp, name="CoOp_AnchorOPT")

