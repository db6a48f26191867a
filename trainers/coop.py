"""CoOp (Zhou et al., IJCV 2022) and CoOp+ATPrompt: one set of learnable context tokens shared by all classes."""

from dassl.engine import TRAINER_REGISTRY
from trainers.base import PromptTrainer
from trainers.layout import unused_attribute_blocks
from trainers.prompting import PromptedCLIP, PromptLearner


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """`TRAINER.COOP.*` configures the context; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    @classmethod
    def build_custom_clip(cls, cfg, clip_model, classnames, attributes):
        return PromptedCLIP(clip_model, cls.build_prompt_learner(cfg, clip_model, classnames, attributes))

    @classmethod
    def build_prompt_learner(cls, cfg, clip_model, classnames, attributes) -> PromptLearner:
        """CoOp's prompt learner from TRAINER.COOP.* (DePT and KgCoOp learn the same prompt)."""
        opts = cfg.TRAINER.COOP
        ctx_init = opts.CTX_INIT or ""
        if attributes and ctx_init:
            print("Note: CTX_INIT is ignored with ATPrompt (the context is randomly initialised, as in the paper)")
            ctx_init = ""
        return PromptLearner(
            clip_model,
            classnames,
            n_ctx=None if ctx_init else opts.N_CTX,
            attributes=attributes,
            ctx_init=ctx_init,
            csc=opts.CSC,
            class_position=opts.CLASS_TOKEN_POSITION,
            single_token_words=cfg.TRAINER.ATPROMPT.SINGLE_TOKEN_WORDS,
            unused_blocks=unused_attribute_blocks(cfg, attributes),
        )


# The original's name: like the original, it uses ATPrompt only with TRAINER.ATPROMPT.USE_ATPROMPT True.
TRAINER_REGISTRY.register(CoOp, name="CoOp_ATP")

