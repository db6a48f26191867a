"""`PromptTrainer`: the Dassl trainer every CLIP prompt learner here builds on.

It owns what the original copied into each trainer: loading CLIP at the configured precision, freezing it, the
plug-ins (ATPrompt's attribute blocks and AnchorOPT's anchor, on any method), the optimiser over the trainable
parameters, the training step (plain, amp with a grad scaler, or bf16 autocast), evaluation, and loading
checkpoints (the original's included). A method declares its card (`METHOD`, trainers/method.py), its prompt
learner and model classes (`LEARNER`, `MODEL`) with their own options, and which parameters learn
(`is_trainable`); the model says how a batch becomes a loss (`forward_train`, `loss`), so `training_step` and
`optimizer_step` serve every method, here and in the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable

import torch
import torch.nn as nn
from yacs.config import CfgNode

from dassl.data.datasets import DatasetBase
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine.feature_cache import CachedEvaluation
from dassl.engine.precision import PRECISIONS, autocast, resolve_precision
from dassl.engine.records import data_differences, differences
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import listdir_nohidden, load_checkpoint
from dassl.utils.errors import UserError
from trainers import anchor_files, anchoropt
from trainers.atprompt import attributes_from_cfg
from trainers.backbone import backbone_identity, load_clip_at
from trainers.layout import describe_arrangement
from trainers.method import Method, methods, run_settings
from trainers.original import FIXED_TOKEN_KEY, UNUSED_BLOCK_KEY, replay_clip_construction, unused_attribute_blocks
from trainers.prompting import PromptedCLIP, PromptLearner

FIT_HINT = ("Evaluate with the settings it was trained with (N_CTX, TRAINER.ATPROMPT.N_ATT*/ATTRIBUTES, the "
            "trainer name).")


def training_step(model: nn.Module, image: torch.Tensor | None, label: torch.Tensor | None, prec: str,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch and the logits it scores (None for a loss without any, AnchorOPT's stage I), at
    precision `prec`: the forward half of every method's step."""
    with autocast(prec, device):
        outputs = model.forward_train(image)
        loss = model.loss(outputs, label)
    return loss, outputs.get("logits")


def optimizer_step(loss: torch.Tensor, optimizers: list[torch.optim.Optimizer],
                   scaler: torch.amp.GradScaler | None = None) -> None:
    """The backward half: zero the gradients, backpropagate (scaled under amp) and step every optimiser."""
    for optim in optimizers:
        optim.zero_grad()
    if scaler is None:
        loss.backward()
        for optim in optimizers:
            optim.step()
        return
    scaler.scale(loss).backward()
    for optim in optimizers:
        scaler.step(optim)
    scaler.update()


class PromptTrainer(CachedEvaluation, TrainerX):
    """Prompt learning on a frozen CLIP. A method subclasses it with its card, `LEARNER` and `MODEL`; the options
    of either beyond the prompt's come from `learner_options` and `model_options`."""

    METHOD: Method
    LEARNER: type[PromptLearner] = PromptLearner
    MODEL: type[PromptedCLIP] = PromptedCLIP
    # None: a word-initialised context (CTX_INIT) is as long as its words (CoOp, CoCoOp). A number: the context keeps
    # N_CTX tokens, the first N_CTX words' when N_CTX is at most this number (the rest of the words stay fixed), else
    # random (MaPLe's and IVLP's originals: 4, the words of "a photo of a").
    CTX_INIT_MAX_LENGTH: int | None = None
    SAVE_NAME = "prompt_learner"  # the registered name: the checkpoint folder under OUTPUT_DIR
    SAVE_WHOLE_MODEL = False  # register the whole model (MaPLe, DePT) instead of the prompt learner
    RECORD_KIND = "train"  # what its training run is to the result tables ("search": not a classifier)

    @classmethod
    def options(cls, cfg: CfgNode) -> CfgNode:
        """The method's own config node, TRAINER.<METHOD.node>."""
        return cfg.TRAINER[cls.METHOD.node]

    @classmethod
    def save_name(cls, cfg: CfgNode) -> str:
        """The registered model's name (its checkpoint folder); AnchorOPT's prompt learner keeps the original's."""
        return anchoropt.SAVE_NAME if anchoropt.enabled(cfg) and not cls.SAVE_WHOLE_MODEL else cls.SAVE_NAME

    @classmethod
    def input_files(cls, cfg: CfgNode, kind: str) -> list[str]:
        """Files besides the config and the backbone whose content decides the run's numbers (their checksums go
        into its fingerprint): AnchorOPT's anchor, unless an evaluation takes it from the checkpoint."""
        if not anchoropt.enabled(cfg) or (kind == "eval" and not cfg.TRAINER.ANCHOROPT.TARGET_ANCHOR):
            return []
        try:
            return [anchor_files.find_anchor(anchor_files.anchor_path(cfg))]
        except UserError:
            return []  # the run says so itself

    # -- construction -------------------------------------------------------------------------------------------
    def check_cfg(self, cfg: CfgNode) -> None:
        self.check_settings(cfg)

    @classmethod
    def check_settings(cls, cfg: CfgNode, kind: str | None = None) -> None:
        """Refuse settings this method cannot run with; train.py calls it before anything is loaded or written, with
        the run's `kind` ("train" or "eval"; None when not known)."""
        prec = cls.options(cfg).PREC
        if prec not in PRECISIONS:
            raise UserError(f"TRAINER.{cls.METHOD.node}.PREC must be one of {', '.join(PRECISIONS)}, got '{prec}'")
        if anchoropt.enabled(cfg) and not cls.METHOD.plugins:
            others = ", ".join(card.name for _, card in methods() if card.plugins)
            raise UserError(f"{cfg.TRAINER.NAME} has no AnchorOPT variant: set TRAINER.ANCHOROPT.USE_ANCHOROPT "
                            f"False, or use it with {others}")
        if anchoropt.enabled(cfg):
            anchoropt.check_settings(cfg)
        cls.attributes_of(cfg)  # ATPrompt's words must be known before the data and CLIP load

    @classmethod
    def attributes_of(cls, cfg: CfgNode) -> list[tuple[str, int]]:
        """The attribute words and soft-token counts the config asks for ([] without ATPrompt)."""
        return attributes_from_cfg(cfg, None if cls.METHOD.plugins else False)

    @classmethod
    def build_custom_clip(cls, cfg: CfgNode, clip_model: nn.Module, classnames: list[str],
                          attributes: list[tuple[str, int]]) -> PromptedCLIP:
        """The method's model around the frozen `clip_model` for these classes and attributes, with AnchorOPT's
        anchor branch when it is on; random values are drawn in the original's order (`METHOD.draws`)."""
        draws = cls.METHOD.draws
        branch = anchoropt.anchor_prompts(cfg, clip_model, classnames, draws.anchor_second_clip)
        learner = cls.build_prompt_learner(cfg, clip_model, classnames, attributes)
        for _ in range(draws.clips_after_learner if cfg.TRAINER.ORIGINAL_DRAWS else 0):
            replay_clip_construction(clip_model)
        options = cls.model_options(cfg, clip_model, classnames)
        return anchoropt.build_model(cls.MODEL, cfg, branch, clip_model, learner,
                                     distill=cls.METHOD.anchoropt_distills, **options)

    @classmethod
    def build_prompt_learner(cls, cfg: CfgNode, clip_model: nn.Module, classnames: list[str],
                             attributes: list[tuple[str, int]]) -> PromptLearner:
        """`LEARNER` with the method's context (N_CTX, CTX_INIT of its node) and the plug-ins: ATPrompt's attribute
        blocks, and AnchorOPT's anchoring (its context is TRAINER.ANCHOROPT.N_CTX random tokens)."""
        n_ctx, ctx_init, anchoring = anchoropt.context(cfg, cls.context_length(cfg), cls.context_init(cfg), attributes)
        word_length = bool(ctx_init) and cls.CTX_INIT_MAX_LENGTH is None
        learner = cls.LEARNER(
            clip_model,
            classnames,
            n_ctx=None if word_length else n_ctx,
            attributes=attributes,
            ctx_init=ctx_init,
            single_token_words=cfg.TRAINER.ATPROMPT.SINGLE_TOKEN_WORDS,
            unused_blocks=unused_attribute_blocks(cfg, attributes),
            anchoring=anchoring,
            **cls.learner_options(cfg),
        )
        if word_length and learner.n_ctx != n_ctx:
            print(f"Note: CTX_INIT '{ctx_init}' sets {learner.n_ctx} context tokens; N_CTX ({n_ctx}) is ignored")
        return learner

    @classmethod
    def context_length(cls, cfg: CfgNode) -> int:
        """The number of learnable class-context tokens (the method's N_CTX)."""
        return cls.options(cfg).N_CTX

    @classmethod
    def context_init(cls, cfg: CfgNode) -> str:
        """The words that initialise the context ("" = random)."""
        if cls.CTX_INIT_MAX_LENGTH is not None and cls.context_length(cfg) > cls.CTX_INIT_MAX_LENGTH:
            return ""
        return cls.options(cfg).CTX_INIT or ""

    @classmethod
    def learner_options(cls, cfg: CfgNode) -> dict:
        """`LEARNER`'s own arguments beyond the prompt's (MaPLe: its depth)."""
        return {}

    @classmethod
    def model_options(cls, cfg: CfgNode, clip_model: nn.Module, classnames: list[str]) -> dict:
        """`MODEL`'s own arguments beyond CLIP and the prompt learner (KgCoOp: its template prompts and weight)."""
        return {}

    @classmethod
    def is_trainable(cls, cfg: CfgNode, name: str) -> bool:
        """Which parameters of the model learn (by name); CLIP itself stays frozen."""
        return "prompt_learner" in name

    def build_model(self) -> None:
        cfg = self.cfg
        self.prec = resolve_precision(self.options(cfg).PREC, self.device)
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        # Where the original drew its prompts while building CLIP, the prompt learner replays that construction,
        # which stands for loading CLIP's draws.
        replayed = self.METHOD.draws.prompts_in_clip and cfg.TRAINER.ORIGINAL_DRAWS
        with torch.random.fork_rng(devices=[]) if replayed else contextlib.nullcontext():
            self.clip_model = clip_model = load_clip_at(cfg, self.prec)
        self.backbone = backbone_identity(cfg)
        self.attributes = self.attributes_of(cfg)
        if cfg.TRAINER.NAME.endswith("_ATP") and not self.attributes:
            print(f"Note: TRAINER.ATPROMPT.USE_ATPROMPT is False, so {cfg.TRAINER.NAME} runs without ATPrompt, as "
                  "the original did; set it True for the attribute blocks")
        if self.attributes:
            blocks = [f"{w} ({n} soft token{'s' * (n != 1)})" for w, n in self.attributes]
            print("ATPrompt attributes: " + ", ".join(blocks))
        print("Building custom CLIP")
        self.model = self.build_custom_clip(cfg, clip_model, self.dm.dataset.classnames, self.attributes)
        self._freeze_and_register()

    @classmethod
    def set_trainable(cls, cfg: CfgNode, model: nn.Module) -> list[str]:
        """Let the parameters that learn (`is_trainable`) have gradients and freeze the rest; their names."""
        for name, param in model.named_parameters():
            param.requires_grad_(cls.is_trainable(cfg, name))
        return [name for name, param in model.named_parameters() if param.requires_grad]

    def _freeze_and_register(self) -> None:
        trainable = self.set_trainable(self.cfg, self.model)
        print(f"Parameters to be updated: {sorted(trainable)}")
        if not any(p.numel() for p in self.model.parameters() if p.requires_grad):
            raise UserError(f"{self.cfg.TRAINER.NAME} has nothing to learn here: no context tokens (N_CTX 0) and no "
                            "attribute blocks; set N_CTX to 1 or more (TRAINER.<method>.N_CTX), or turn ATPrompt on")
        if self.cfg.MODEL.INIT_WEIGHTS:
            from dassl.utils import load_pretrained_weights

            load_pretrained_weights(self.model.prompt_learner, self.cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        # OPTIM.STAGED_LR: the model's children named in OPTIM.NEW_LAYERS learn at LR, the others at LR x BASE_LR_MULT.
        self.optim = build_optimizer(self.model if self.cfg.OPTIM.STAGED_LR else params, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        registered = self.model if self.SAVE_WHOLE_MODEL else self.model.prompt_learner
        self.register_model(self.save_name(self.cfg), registered, self.optim, self.sched)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.prec == "amp" else None

    # -- training and inference ----------------------------------------------------------------------------------
    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict) -> dict:
        image, label = self.parse_batch_train(batch)
        loss, logits = training_step(self.model, image, label, self.prec, self.device)
        self.backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(logits, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def backward_and_update(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        optimizer_step(loss, [o for o in self._optims.values() if o is not None], self.scaler)
        self.detect_anomaly_in_parameters(p for p in self.model.parameters() if p.requires_grad)

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with autocast(self.prec, self.device):
            return self.model(image).float()

    def test(self, split: str | None = None, is_final: bool = False) -> float:
        if anchoropt.enabled(self.cfg):
            rule = ("the normal branch (the classes it was trained on)" if self.model.seen_classes else
                    "the average of the normal and anchor branches (classes it was not trained on)")
            print(f"AnchorOPT: the learned arrangement is {' '.join(self.describe()['prompt']['arrangement'])}; "
                  f"testing with {rule}")
        return super().test(split, is_final)

    # Evaluation from cached image features (dassl/engine/feature_cache.py): model_inference in two steps.
    def frozen_image_encoder(self) -> nn.Module | None:
        if not self.model.TEST_LOGITS_FROM_ENCODER:
            return None
        encoder = self.model.image_encoder
        return None if any(p.requires_grad for p in encoder.parameters()) else encoder

    def encoding_code(self) -> list[Callable]:
        return [*super().encoding_code(), type(self.model).encode_image]

    def encode_images(self, image: torch.Tensor) -> torch.Tensor:
        with autocast(self.prec, self.device):
            return self.model.encode_image(image)

    def logits_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        with autocast(self.prec, self.device):
            return self.model.logits_from_encoded(encoded).float()

    # -- what the run is, and checkpoints ----------------------------------------------------------------------
    def describe(self) -> dict:
        """For the run record: the backbone and the prompt the model learns."""
        learner = self.model.prompt_learner
        prompt = {"n_ctx": getattr(learner, "n_ctx", None), "attributes": [w for w, _ in self.attributes],
                  "n_att": [n for _, n in self.attributes]}
        method = self.method_name()
        if anchoropt.enabled(self.cfg):
            with torch.no_grad():
                arrangement = describe_arrangement(learner.ctx_pos_params, learner.n_ctx)
            prompt |= {"anchor_len": learner.anchoring.length, "arrangement": arrangement,
                       "anchor": learner.anchor_origin}
        return {"method": method, "backbone": self.backbone, "prompt": prompt}

    def method_name(self) -> str:
        """The method as the result tables name it: the trainer class, with "_ATP" when the attribute blocks are on
        and "_AnchorOPT" with AnchorOPT (e.g. CoOp_ATP_AnchorOPT), whatever name the run was started with."""
        name = type(self).__name__
        return name + "_ATP" * bool(self.attributes) + "_AnchorOPT" * anchoropt.enabled(self.cfg)

    def run_settings(self) -> dict:
        """The settings that decide a training run's numbers (dassl/engine/records.py)."""
        return run_settings(self.cfg, "train", type(self))

    def checkpoint_meta(self) -> dict:
        """What a checkpoint says of its run: enough to rebuild the model without the data (trainers/classifier.py)."""
        return {"trainer": self.cfg.TRAINER.NAME, "settings": self.run_settings(), "backbone": self.backbone,
                "prompt": self.describe()["prompt"], "data": self.dm.data_identity,
                "classnames": list(self.dm.dataset.classnames)}

    def state_to_save(self, name: str) -> dict:
        """The registered model's weights without the frozen CLIP's, which are the backbone's own (so a MaPLe or
        DePT checkpoint is not a copy of CLIP); loading (ours or the original's) never needs them."""
        frozen = {t.data_ptr() for t in self.clip_model.state_dict().values()}
        state = self._models[name].state_dict()
        return type(state)((k, v) for k, v in state.items() if not (torch.is_tensor(v) and v.data_ptr() in frozen))

    def state_to_resume(self, name: str, saved: dict) -> dict:
        """A checkpoint's weights completed with the frozen CLIP's, which `state_to_save` left out."""
        frozen = {t.data_ptr() for t in self.clip_model.state_dict().values()}
        own = self._models[name].state_dict()
        return {**{k: v for k, v in own.items() if torch.is_tensor(v) and v.data_ptr() in frozen}, **saved}

    def check_resumable(self, checkpoint: dict, path: str) -> None:
        meta = checkpoint.get("meta") or {}
        # Keys this run does not read (other methods' nodes) never stop a resume.
        now = self.run_settings()
        saved = {k: v for k, v in meta.get("settings", {}).items() if k in now}
        changed = differences(saved, now) if "settings" in meta else []
        if meta.get("data") is not None:  # checkpoints from before data identities are checked without one
            changed += sum(data_differences(meta["data"], self.dm.data_identity), [])
        if meta.get("backbone", self.backbone)["sha256"] != self.backbone["sha256"]:
            changed.append(f"the backbone's weights: sha256 {meta['backbone']['sha256'][:12]}... -> "
                           f"{self.backbone['sha256'][:12]}...")
        if changed:
            raise UserError(
                f'Cannot resume from "{path}": it was trained with other settings ({"; ".join(changed)}). Rerun '
                "with the settings it was trained with, or train with these in a new --output-dir."
            )

    @classmethod
    def check_origin(cls, cfg: CfgNode, checkpoint: dict, path: str, backbone: dict[str, str]) -> None:
        """A checkpoint of another method, or of another CLIP (`backbone`: the one here), is refused for evaluation
        (before its weights are looked at). The original's checkpoints carry no such record and are checked by
        their weights alone."""
        meta = checkpoint.get("meta") or {}
        trainer = meta.get("trainer")
        if trainer and trainer in TRAINER_REGISTRY and TRAINER_REGISTRY.get(trainer) is not cls:
            raise UserError(f"{path} was trained by {trainer}, not {cfg.TRAINER.NAME}: evaluate it with "
                            f"--trainer {trainer} and the settings it was trained with")
        saved = meta.get("backbone")
        if saved and saved["sha256"] != backbone["sha256"]:
            raise UserError(f"{path} was trained on {saved['name']} (weights sha256 {saved['sha256'][:12]}...), but "
                            f"the backbone {backbone['name']} here has sha256 {backbone['sha256'][:12]}...:"
                            " evaluate it with the CLIP it was trained on (MODEL.BACKBONE.NAME)")

    def load_model(self, directory: str | None, epoch: int | None = None) -> None:
        """Load the weights saved under `directory` (ours or the original's) for evaluation.

        `epoch` None takes model-best.pth.tar if present, else the latest epoch. The prompt layout recorded in our
        checkpoints (attribute words and token counts) replaces the configured one, so a model is evaluated with
        the attributes it was trained with, whatever the target dataset's defaults are.
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            path = checkpoint_file(directory, name, epoch)
            checkpoint = load_checkpoint(path)
            self.check_origin(self.cfg, checkpoint, path, self.backbone)
            self._adopt_layout({k: v for k, v in checkpoint["state_dict"].items() if not FIXED_TOKEN_KEY.search(k)})
            print(f'Loading weights to {name} from "{path}" (epoch = {checkpoint["epoch"]})')
            self.load_weights(self.cfg, self.model, checkpoint, path, self.backbone, self.dm.dataset)
            self.loaded_epoch = checkpoint["epoch"]

    @classmethod
    def load_weights(cls, cfg: CfgNode, model: PromptedCLIP, checkpoint: dict, path: str, backbone: dict[str, str],
                     dataset: DatasetBase | None = None) -> None:
        """Load a checkpoint (ours or the original's, read from `path`) into `model`, a model of this method built
        for the classes it is evaluated on, and set its test rule for them; `dataset`: the evaluated dataset, when
        there is one. Whatever does not fit is refused, naming it; a trainer and the classifier both load this way.
        `model`'s trainable parameters (`set_trainable`) are those the checkpoint must hold."""
        cls.check_origin(cfg, checkpoint, path, backbone)
        meta = checkpoint.get("meta") or {}
        state = {k: v for k, v in checkpoint["state_dict"].items() if not FIXED_TOKEN_KEY.search(k)}
        if anchoropt.enabled(cfg):
            state = anchoropt.adopt_anchor(cfg, model, state, meta.get("settings"))
        state = cls.adapt_state_dict(cfg, model, state, meta, dataset)
        module = model if cls.SAVE_WHOLE_MODEL else model.prompt_learner
        own = module.state_dict()
        state = {k: v for k, v in state.items() if k in own or not UNUSED_BLOCK_KEY.search(k)}
        cls._check_layout(state, module, path)
        cls._check_fits(state, module, path)
        module.load_state_dict(state, strict=False)

    @classmethod
    def adapt_state_dict(cls, cfg: CfgNode, model: PromptedCLIP, state: dict, meta: dict,
                         dataset: DatasetBase | None = None) -> dict:
        """Hook: fit a checkpoint's weights to the evaluated classes before they are checked and loaded (e.g. keep
        the rows of a classifier head that the target classes use); `meta` is what our checkpoints say of their
        run (empty for the original's), `dataset` the evaluated dataset when there is one."""
        return state

    def _prefix(self) -> str:
        return "prompt_learner." if self.SAVE_WHOLE_MODEL else ""

    def _adopt_layout(self, state: dict) -> None:
        layout = state.get(self._prefix() + "_extra_state")
        if not isinstance(layout, dict) or "attributes" not in layout:
            return
        saved = list(zip(layout["attributes"], layout["n_att"]))
        if saved == self.attributes:
            return
        print(f"Using the checkpoint's attributes {saved or 'none'} instead of {self.attributes or 'none'}")
        self.attributes = saved
        self._replace_model(self.build_custom_clip(self.cfg, self.clip_model, self.dm.dataset.classnames, saved))

    def _replace_model(self, new_model: nn.Module) -> None:
        """Evaluate with `new_model`, built for a checkpoint, instead of the model built from the config."""
        new_model.to(self.device)
        self.set_trainable(self.cfg, new_model)
        self.model = new_model
        self._models[self.save_name(self.cfg)] = new_model if self.SAVE_WHOLE_MODEL else new_model.prompt_learner

    @staticmethod
    def _check_layout(state: dict, module: nn.Module, path: str) -> None:
        """The layout a checkpoint records (attributes, token counts, class position, ...) must be the model's:
        told before any weight is compared, since a layout difference explains every weight that does not fit."""
        for key, value in state.items():
            if key.endswith("_extra_state"):
                try:
                    module.get_submodule(key.rpartition(".")[0]).set_extra_state(value)
                except UserError as err:
                    raise UserError(f"{path} does not fit the model: {err.message}. {FIT_HINT}") from err

    @staticmethod
    def _check_fits(state: dict, module: nn.Module, path: str) -> None:
        """Every learnable weight must come from the checkpoint, with its shape, and every weight the checkpoint
        holds must have a place in the model: a partial load would evaluate another model than either."""
        own = module.state_dict()
        problems = [
            f"'{k}' has shape {list(v.shape)} in the checkpoint but {list(own[k].shape)} in the model"
            for k, v in state.items()
            if k in own and torch.is_tensor(v) and v.shape != own[k].shape
        ]
        learnable = [n for n, p in module.named_parameters() if p.requires_grad and n not in state]
        problems += [f"the checkpoint has no '{k}'" for k in learnable]
        foreign = [k for k in state if k not in own]
        problems += [f"the model has no '{k}' (and {len(foreign) - 1} more)" if len(foreign) > 1
                     else f"the model has no '{k}'" for k in foreign[:1]]
        if problems:
            raise UserError(f"{path} does not fit the model: " + "; ".join(problems) + f". {FIT_HINT}")


def checkpoint_file(directory: str, name: str, epoch: int | None) -> str:
    """`directory/name/model.pth.tar-<epoch>`; without an epoch, model-best.pth.tar or else the latest one."""
    folder = os.path.join(directory, name)
    if not os.path.isdir(folder):
        found = listdir_nohidden(directory, sort=True) if os.path.isdir(directory) else None
        where = f"it holds {found}" if found is not None else "that folder does not exist"
        raise UserError(
            f"no checkpoint folder '{folder}' ({where}); --model-dir must be the training output folder of this "
            f"trainer, which holds '{name}/model.pth.tar-N'"
        )
    if epoch is not None and epoch >= 0:
        path = os.path.join(folder, f"model.pth.tar-{epoch}")
        if not os.path.isfile(path):
            raise UserError(f"no checkpoint '{path}'; available: {sorted(os.listdir(folder))}")
        return path
    best = os.path.join(folder, "model-best.pth.tar")
    if os.path.isfile(best):
        return best
    epochs = [int(m.group(1)) for f in os.listdir(folder) if (m := re.fullmatch(r"model\.pth\.tar-(\d+)", f))]
    if not epochs:
        raise UserError(f"no checkpoint in '{folder}' (expected model.pth.tar-N or model-best.pth.tar)")
    return os.path.join(folder, f"model.pth.tar-{max(epochs)}")
