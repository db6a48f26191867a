"""CoOp (Zhou et al., IJCV 2022) and CoOp+ATPrompt: one set of learnable context tokens shared by all classes."""

from dassl.engine import TRAINER_REGISTRY
from trainers.base import PromptTrainer
from trainers.prompting import PromptedCLIP, PromptLearner


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """`TRAINER.COOP.*` configures the context; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    def build_custom_clip(self, clip_model, classnames, attributes):
        return PromptedCLIP(clip_model, self.build_prompt_learner(clip_model, classnames, attributes))

    def build_prompt_learner(self, clip_model, classnames, attributes) -> PromptLearner:
        opts = self.cfg.TRAINER.COOP
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
            single_token_words=self.cfg.TRAINER.ATPROMPT.SINGLE_TOKEN_WORDS,
        )


@TRAINER_REGISTRY.register()
class CoOp_ATP(CoOp):
    """The original's name for CoOp with ATPrompt; always uses the attribute blocks."""

    USE_ATPROMPT = True

