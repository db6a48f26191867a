"""Differentiable attribute search (the paper's step 2): which subset of the attribute bases suits a dataset best.

Every subset of the bases (a *candidate*) gets its own soft prompts in the attribute-anchored layout. Their class
logits are mixed with the softmax of the architecture weights `alpha`, and training alternates, as in first-order
DARTS: an SGD step on the prompts (train batch), then an Adam step on `alpha` (validation batch, cycling through
the whole validation set). The candidate with the highest confidence softmax(alpha) at the end is the result.

All candidates' prompts go through the text encoder in one batched call, chunked (with activation
checkpointing) when they would not fit in memory at once; `use_plain_computation()` restores the plain
one-call-per-candidate computation it must agree with.
"""

from __future__ import annotations

import itertools
import os.path as osp
import random
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY
from dassl.engine.distributed import is_main_process
from dassl.engine.precision import autocast
from dassl.metrics import compute_accuracy
from dassl.utils import atomic_write, write_json
from dassl.utils.errors import UserError
from datasets import catalog
from trainers.base import PromptTrainer, optimizer_step, training_step
from trainers.families import Family
from trainers.method import BenchmarkCase, Method
from trainers.prompting import PromptedCLIP, PromptLearner

RESULT_FILE = "attribute_search.json"
PLOT_FILE = "attribute_search.png"
CPU_CHUNK_BYTES = 4 * 2**30  # activation budget of one text-encoder call on the CPU (automatic chunking)
# Activations autograd keeps per token and layer, in fp32 values per unit of text width (measured ~20 for CLIP's
# text blocks; counting 4 bytes each is conservative for amp and bf16).
SAVED_FLOATS_PER_WIDTH = 24


# --------------------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------------------
def search_bases(cfg) -> list[str]:
    """TRAINER.ATTRIBUTE_SEARCH.BASES, else the original's TRAINER.COOP.ATT1_TEXT..ATT5_TEXT (those set), else the
    paper's bases for DATASET.NAME."""
    bases = [str(w) for w in cfg.TRAINER.ATTRIBUTE_SEARCH.BASES]
    bases = bases or [w for w in (cfg.TRAINER.COOP[f"ATT{k}_TEXT"] for k in range(1, 6)) if w != "none"]
    if not bases:
        fix = "give them with TRAINER.ATTRIBUTE_SEARCH.BASES \"['w1', 'w2', ...]\" (gpt_query.py proposes some)"
        bases = catalog.paper_words(cfg.DATASET.NAME, "bases", fix)
    if len(set(bases)) != len(bases):
        raise UserError(f"TRAINER.ATTRIBUTE_SEARCH.BASES has repeated words: {bases}")
    return bases


def candidate_subsets(bases: Sequence[str], min_size: int = 1, max_size: int = -1,
                      shuffle: bool = False) -> list[tuple[str, ...]]:
    """Every subset of `bases` with min_size <= size <= max_size (-1: all), by size, each in the bases' order.

    `shuffle` puts them in the order Python's `random.shuffle` gives, as the original did: the search does not
    depend on the order, but the random values each candidate's prompts get do.
    """
    n = len(bases)
    top = n if max_size == -1 else max_size
    if not 1 <= min_size <= top <= n:
        raise UserError(
            f"TRAINER.ATTRIBUTE_SEARCH.MIN_SIZE {min_size} / MAX_SIZE {max_size} do not fit {n} bases: "
            f"need 1 <= MIN_SIZE <= MAX_SIZE <= {n} (MAX_SIZE -1 = {n})"
        )
    subsets = [tuple(c) for size in range(min_size, top + 1) for c in itertools.combinations(bases, size)]
    if shuffle:
        random.shuffle(subsets)
    return subsets


def training_overrides(words: Sequence[str]) -> str:
    """The train.py options that train with these attributes."""
    return f'TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.ATTRIBUTES "{list(words)!r}"'


# --------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------
class CandidatePrompts(nn.Module):
    """One `PromptLearner` per candidate and the architecture weights `alpha` over the candidates.

    `forward` stacks every candidate's prompts into one batch [G * n_cls, L, D], zero-padded to the longest
    sequence: padding after a prompt's EOT token never reaches it through the causal text encoder.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        candidates: Sequence[Sequence[str]],
        n_ctx: int,
        n_att: int,
        csc: bool = False,
        class_position: str = "end",
    ) -> None:
        super().__init__()
        self.candidates = [tuple(c) for c in candidates]
        self.n_cls = len(classnames)
        self.alpha = nn.Parameter(torch.rand(len(candidates)))  # uniform [0, 1), drawn first as in the original
        self.learners = nn.ModuleList(
            PromptLearner(clip_model, classnames, n_ctx, [(w, n_att) for w in words], csc=csc,
                          class_position=class_position)
            for words in self.candidates
        )
        self.register_buffer("eot", torch.cat([learner.eot for learner in self.learners]), persistent=False)
        self.row_length = self.eot.cpu() + 1  # tokens each row needs, kept on the CPU to size chunks without a sync

    def forward(self) -> torch.Tensor:
        prompts = [learner() for learner in self.learners]
        length = max(p.shape[-2] for p in prompts)
        return torch.cat([F.pad(p, (0, 0, 0, length - p.shape[-2])) for p in prompts])

    def get_extra_state(self) -> dict:
        return {"candidates": [list(c) for c in self.candidates]}

    def set_extra_state(self, state: dict) -> None:
        saved = [tuple(c) for c in state.get("candidates", self.candidates)]
        if saved != self.candidates:
            raise UserError(
                f"the checkpoint searched {len(saved)} candidates {saved[:3]}... but this run has "
                f"{len(self.candidates)} {self.candidates[:3]}...: use the same TRAINER.ATTRIBUTE_SEARCH.BASES / "
                "MIN_SIZE / MAX_SIZE, or another output folder"
            )


class AttributeSearchCLIP(PromptedCLIP):
    """CLIP whose logits are the softmax(alpha)-weighted mixture of every candidate's logits.

    The mixture is linear, so it is computed on the text features: sum_g w_g * T_g, then one matmul.
    """

    prompt_learner: CandidatePrompts

    per_candidate = False

    def __init__(self, clip_model: nn.Module, prompts: CandidatePrompts, chunk_size: int = 0) -> None:
        super().__init__(clip_model, prompts)
        self.chunk_size = chunk_size
        self._token_budget: int | None = None

    def use_plain_computation(self, plain: bool = True) -> AttributeSearchCLIP:
        self.per_candidate = plain
        return super().use_plain_computation(plain)

    def _encode_text(self) -> torch.Tensor:
        """Normalised text features [G, n_cls, E] of every candidate."""
        if self.per_candidate:
            return self._encode_per_candidate()
        prompts, eot = self.prompt_learner(), self.prompt_learner.eot
        groups, memory_bound = self._groups()
        features = torch.cat([self._encode_chunk(prompts[rows, :length], eot[rows], memory_bound)
                              for rows, length in groups])
        order = torch.cat([rows for rows, _ in groups])
        features = features[torch.argsort(order.to(features.device))]
        return F.normalize(features, dim=-1).unflatten(0, (-1, self.prompt_learner.n_cls))

    def _encode_chunk(self, prompts: torch.Tensor, eot: torch.Tensor, memory_bound: bool) -> torch.Tensor:
        if memory_bound and torch.is_grad_enabled() and prompts.requires_grad:
            # Keep only the chunk's inputs; its activations are recomputed in backward, so memory is one chunk's.
            return checkpoint(self.text_encoder, prompts, eot, use_reentrant=False)
        return self.text_encoder(prompts, eot)

    def _groups(self) -> tuple[list[tuple[torch.Tensor, int]], bool]:
        """(rows, length) calls for the text encoder: rows of one length together, so no call pays for padding,
        and at most the chunk size of rows per call; and whether the chunk size, not the lengths, splits them
        (then activations are recomputed in backward to keep one chunk's in memory)."""
        lengths = self.prompt_learner.row_length
        rows = len(lengths)
        if self.chunk_size > 0:
            size = self.chunk_size
        elif self.chunk_size == 0:
            size = rows
        else:
            size = max(1, self._tokens_per_call() // int(lengths.max()))
        groups = []
        for length in torch.unique(lengths).tolist():
            same = torch.nonzero(lengths == length).flatten().to(self.prompt_learner.eot.device)
            groups += [(same[s : s + size], length) for s in range(0, len(same), size)]
        return groups, size < rows

    def _tokens_per_call(self) -> int:
        """Automatic chunking: as many tokens as half the free memory can hold activations for (fixed at first use)."""
        if self._token_budget is None:
            device = self.prompt_learner.eot.device
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
                budget = free // 2
            else:
                budget = CPU_CHUNK_BYTES
            transformer = self.text_encoder.transformer
            per_token = SAVED_FLOATS_PER_WIDTH * transformer.width * transformer.layers * 4
            self._token_budget = max(1, budget // per_token)
        return self._token_budget

    def _encode_per_candidate(self) -> torch.Tensor:
        """The plain computation: one text-encoder call per candidate."""
        features = [self.text_encoder(learner(), learner.eot) for learner in self.prompt_learner.learners]
        return F.normalize(torch.stack(features), dim=-1)

    def mix(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Mixture logits [B, n_cls] in fp32 (outside autocast), so alpha's gradient never sees half precision."""
        with torch.autocast(image_features.device.type, enabled=False):
            weights = self.prompt_learner.alpha.float().softmax(dim=0)
            text = torch.einsum("g,gce->ce", weights, text_features.float())
            return self.logit_scale.float().exp() * image_features.float() @ text.t()

    def class_logits(self, image_features: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        return self.mix(image_features, self.text_features() if text is None else text)

    def alpha_loss(self, image: torch.Tensor, label: torch.Tensor, prec: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation loss of a batch as a function of alpha alone (the prompts held fixed), and its logits."""
        with torch.no_grad(), autocast(prec, image.device):
            image_features = self.image_features(image)
            text_features = self.text_features()
        logits = self.mix(image_features, text_features)
        return F.cross_entropy(logits, label), logits


# --------------------------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------------------------
def config() -> CN:
    """TRAINER.ATTRIBUTE_SEARCH. The prompts' shape comes from CoOp's keys, as in the original search script
    (TRAINER.COOP.N_CTX, CSC, CLASS_TOKEN_POSITION; N_ATT1 soft tokens per attribute; ATT1_TEXT..ATT5_TEXT bases)."""
    node = CN()
    node.BASES = []  # candidate words; empty = the dataset's bases from the paper
    node.MIN_SIZE = 1  # smallest subset size (the original code used 3)
    node.MAX_SIZE = -1  # largest subset size; -1 = all bases
    node.ALPHA_LR = 0.02
    node.ALPHA_BETAS = (0.5, 0.999)
    node.ALPHA_WEIGHT_DECAY = 0.0
    node.CHUNK_SIZE = -1  # prompts per text-encoder call: -1 = sized from free memory, 0 = all at once, N = N
    node.PREC = "fp32"
    # The candidates in the order Python's random.shuffle gives, as the original (False: by size, as listed).
    node.SHUFFLE = True
    # "all": alpha steps cycle through the whole validation set; "first_batch": the original's, the first
    # validation batch at every step (alpha then sees at most DATALOADER.TEST.BATCH_SIZE images).
    node.VALIDATION = "all"
    return node


# scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"] (the original's attribute_compute/main.sh).
SEARCH = Family("", "search", "AttributeCompute", "CoOp", "vit_b16",
                "{DATASET}/AttributeCompute/{CFG}_{SHOTS}shots/nctx{NCTX}_cscFalse_ctpend/search_attribute", "",
                "TRAINER.COOP.N_CTX {NCTX} TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end "
                "TRAINER.COOP.N_ATT1 {NCTX} TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE -1",
                {"EPO": 40, "NCTX": 4}, scripts={"main": "train"},
                summary="the attribute search: which subset of the bases suits the dataset")
# The benchmark's search: the original script's prompt shape (NCTX = N_ATT = 4) on ImageNet's five bases.
BENCHMARK_OPTIONS = ("TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.N_ATT1", 4)
ORIGINAL_MIN_SIZE = 3  # the original kept only subsets of 3 or more bases: 16 of the 31


@TRAINER_REGISTRY.register()
class AttributeSearch(PromptTrainer):
    """Searches TRAINER.ATTRIBUTE_SEARCH.* over subsets of the attribute bases; writes attribute_search.json."""

    METHOD = Method(
        "AttributeSearch", "attribute_search", "ATTRIBUTE_SEARCH", order=90, config=config, reads=("COOP",),
        families=(SEARCH,), plugins=False,
        benchmark=(
            BenchmarkCase("search", {0: None}, name="search", options=BENCHMARK_OPTIONS),
            BenchmarkCase("search", {0: 5.0}, name="search-vs-16", options=BENCHMARK_OPTIONS,
                          plain_options=("TRAINER.ATTRIBUTE_SEARCH.MIN_SIZE", ORIGINAL_MIN_SIZE), plain_prec="fp32",
                          compare=False,
                          note="search-vs-16: all 31 candidates at the run's precision against the original's search "
                               "step (the 16 subsets of 3 or more bases, fp32, one full-context call per candidate)"),
        ),
        summary="the differentiable attribute search (the paper's step 2)",
    )
    RECORD_KIND = "search"  # its record is a search, not a classifier of a result table

    @classmethod
    def check_settings(cls, cfg: CN, kind: str | None = None) -> None:
        super().check_settings(cfg, kind)
        if cfg.TRAINER.ATTRIBUTE_SEARCH.VALIDATION not in ("all", "first_batch"):
            raise UserError(f"TRAINER.ATTRIBUTE_SEARCH.VALIDATION is '{cfg.TRAINER.ATTRIBUTE_SEARCH.VALIDATION}'; "
                            "use all (the whole validation set, in turn) or first_batch (the original's)")

    @classmethod
    def build_custom_clip(cls, cfg, clip_model, classnames, attributes):
        opts = cfg.TRAINER.ATTRIBUTE_SEARCH
        bases = search_bases(cfg)
        candidates = candidate_subsets(bases, opts.MIN_SIZE, opts.MAX_SIZE, shuffle=opts.SHUFFLE)
        sizes = sorted({len(c) for c in candidates})
        print(f"Attribute bases: {', '.join(bases)}; {len(candidates)} candidate subsets of size "
              f"{sizes[0]}-{sizes[-1]}")
        return cls.build_search(cfg, clip_model, classnames, candidates)

    @staticmethod
    def build_search(cfg, clip_model, classnames, candidates: Sequence[tuple[str, ...]]) -> AttributeSearchCLIP:
        if cfg.TRAINER.COOP.CTX_INIT:
            print("Note: CTX_INIT is ignored by the attribute search (the context is randomly initialised)")
        prompts = CandidatePrompts(
            clip_model, classnames, candidates, n_ctx=cfg.TRAINER.COOP.N_CTX, n_att=cfg.TRAINER.COOP.N_ATT1,
            csc=cfg.TRAINER.COOP.CSC, class_position=cfg.TRAINER.COOP.CLASS_TOKEN_POSITION,
        )
        return AttributeSearchCLIP(clip_model, prompts, chunk_size=cfg.TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE)

    @classmethod
    def is_trainable(cls, cfg, name: str) -> bool:
        return name.startswith("prompt_learner.learners.")  # alpha has its own optimiser

    def _adopt_layout(self, state: dict) -> None:
        """A checkpoint of the same candidates in another order (they are shuffled) is evaluated in its order."""
        saved = [tuple(c) for c in (state.get("_extra_state") or {}).get("candidates", [])]
        if saved and saved != self.candidates and sorted(saved) == sorted(self.candidates):
            self._replace_model(self.build_search(self.cfg, self.clip_model, self.dm.dataset.classnames, saved))

    def build_model(self) -> None:
        if self.val_loader is None:
            raise UserError(
                f"the attribute search learns alpha on the validation split, and {self.cfg.DATASET.NAME} has none "
                "here; use a dataset with a val split"
            )
        super().build_model()  # SGD (OPTIM) over the prompts, registered as "prompt_learner" with alpha inside
        opts = self.cfg.TRAINER.ATTRIBUTE_SEARCH
        alpha = self.model.prompt_learner.alpha.requires_grad_(True)
        self.alpha_optim = torch.optim.Adam(
            [alpha], lr=opts.ALPHA_LR, betas=tuple(opts.ALPHA_BETAS), weight_decay=opts.ALPHA_WEIGHT_DECAY
        )
        print(f"Architecture weights alpha ({len(alpha)} candidates): Adam, lr {opts.ALPHA_LR}, betas "
              f"{tuple(opts.ALPHA_BETAS)}, weight decay {opts.ALPHA_WEIGHT_DECAY}")
        self.alpha_history: list[tuple[int, list[float]]] = []  # (epoch, alpha) at the start and after each epoch
        self._val_iter = None
        self._val_batches = 0  # validation batches drawn so far; a resumed run continues at the same one

    # -- the alternating optimisation ----------------------------------------------------------------------------
    @property
    def candidates(self) -> list[tuple[str, ...]]:
        return self.model.prompt_learner.candidates

    def forward_backward(self, batch: dict) -> dict:
        image, label = self.parse_batch_train(batch)
        loss, output = training_step(self.model, image, label, self.prec, self.device)
        self.detect_anomaly(loss)
        optimizer_step(loss, [self.optim], self.scaler)  # the prompts only: alpha's gradient here is discarded

        val_image, val_label = self.next_val_batch()
        val_loss, val_output = self.model.alpha_loss(val_image, val_label, self.prec)
        self.detect_anomaly(val_loss)
        optimizer_step(val_loss, [self.alpha_optim])
        self.detect_anomaly_in_parameters(p for p in self.model.parameters() if p.requires_grad)

        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {
            "loss_train": loss.item(),
            "acc_train": compute_accuracy(output, label)[0].item(),
            "loss_val": val_loss.item(),
            "acc_val": compute_accuracy(val_output, val_label)[0].item(),
        }

    def next_val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next validation batch, starting over when the validation set is exhausted; with VALIDATION
        "first_batch", the original's: the first batch of a new iterator at every step."""
        if self.cfg.TRAINER.ATTRIBUTE_SEARCH.VALIDATION == "first_batch":
            return self.parse_batch_test(next(iter(self.val_loader)))
        if self._val_iter is None:
            self._val_iter = self._fresh_val_iter(skip=self._val_batches % len(self.val_loader))
        batch = next(self._val_iter, None)
        if batch is None:
            self._val_iter = self._fresh_val_iter()
            batch = next(self._val_iter)
        self._val_batches += 1
        return self.parse_batch_test(batch)

    def _fresh_val_iter(self, skip: int = 0):
        # A new loader iterator draws a seed from the global RNG; forking keeps the training stream unaffected.
        with torch.random.fork_rng(devices=[]):
            batches = iter(self.val_loader)
        for _ in range(skip):
            next(batches)
        return batches

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def confidences(self) -> list[float]:
        return self.model.prompt_learner.alpha.detach().float().softmax(dim=0).tolist()

    def _record_alpha(self, epoch: int) -> None:
        self.alpha_history.append((epoch, self.model.prompt_learner.alpha.detach().float().cpu().tolist()))

    def before_train(self) -> None:
        super().before_train()  # may resume, restoring alpha_history
        if not self.alpha_history:
            self._record_alpha(self.start_epoch)

    def after_epoch(self) -> None:
        self._record_alpha(self.epoch + 1)
        print(f"Attribute search, epoch {self.epoch + 1}/{self.max_epoch}, candidates by confidence:")
        conf = self.confidences()
        for g in sorted(range(len(conf)), key=lambda g: -conf[g]):
            print(f"words: {self.candidates[g]}, conf: {conf[g]:.3f}")
        super().after_epoch()  # saves checkpoints, which carry alpha_history

    def after_train(self) -> None:
        result = self.search_result()
        if is_main_process():  # one writer when several processes train together
            write_json(result, osp.join(self.output_dir, RESULT_FILE))
            plot_confidences(osp.join(self.output_dir, PLOT_FILE), result)
        best = result["ranking"][0]
        print(f"Chosen attributes: {', '.join(best['attributes'])} (confidence {best['confidence']:.3f})")
        start = result["start"]
        if start["barely_moved"]:
            leader = "is" if start["winner_was_leading"] else "is not"
            print(f"Note: alpha moved at most {start['moved']:.3f} from its random start, less than the spread of its "
                  f"initial values ({start['spread']:.3f}), so the ranking may still reflect the initialisation (the "
                  f"winner {leader} the initial leader): search longer (EPO) or with a larger "
                  "TRAINER.ATTRIBUTE_SEARCH.ALPHA_LR")
        print(f"Search result written to {osp.join(self.output_dir, RESULT_FILE)} and {PLOT_FILE}")
        print("Train with them by adding to train.py:")
        print(f"  {result['train_overrides']}")
        # EXTRA_OPTS is split like a shell line: the list is quoted, else its quotes go and it is no list.
        words = repr(list(best["attributes"]))
        print(f"or, to the run scripts' environment: EXTRA_OPTS=\"TRAINER.ATPROMPT.ATTRIBUTES \\\"{words}\\\"\"")
        super().after_train()

    def search_result(self) -> dict:
        """Ranking, alpha per epoch and the chosen subset: the content of attribute_search.json."""
        conf = self.confidences()
        alpha = self.model.prompt_learner.alpha.detach().float().tolist()
        order = sorted(range(len(conf)), key=lambda g: -conf[g])
        chosen = list(self.candidates[order[0]])
        initial = torch.tensor(self.alpha_history[0][1])
        moved = float((torch.tensor(alpha) - initial).abs().max())
        spread = float(initial.max() - initial.min())
        return {
            # How far alpha came from its random start, against the spread of that start: the yardstick of a
            # decided search (a ranking that moved less than the start's spread may be the start's ranking).
            "start": {"spread": spread, "moved": moved, "barely_moved": moved < spread,
                      "winner_was_leading": int(initial.argmax()) == order[0],
                      "confidence_range": [float(v) for v in initial.softmax(0).aminmax()]},
            "dataset": self.cfg.DATASET.NAME,
            "bases": search_bases(self.cfg),
            "chosen": chosen,
            "train_overrides": training_overrides(chosen),
            "ranking": [{"attributes": list(self.candidates[g]), "confidence": conf[g], "alpha": alpha[g]}
                        for g in order],
            "candidates": [list(c) for c in self.candidates],
            "epochs": [epoch for epoch, _ in self.alpha_history],
            "alpha": [values for _, values in self.alpha_history],
            "confidence": [torch.tensor(values).softmax(dim=0).tolist() for _, values in self.alpha_history],
        }

    # -- resumption: alpha's optimiser, its history and the validation position ride in the checkpoint -----------
    def _resume_state(self, batches_done: int) -> dict:
        state = super()._resume_state(batches_done)
        state["attribute_search"] = {
            "alpha_optim": self.alpha_optim.state_dict(),
            "alpha_history": self.alpha_history,
            "val_batches": self._val_batches,
        }
        return state

    def _apply_resume_state(self, state: dict) -> None:
        super()._apply_resume_state(state)
        search = state.get("attribute_search")
        if search:
            self.alpha_optim.load_state_dict(search["alpha_optim"])
            self.alpha_history = [(int(e), list(a)) for e, a in search["alpha_history"]]
            self._val_batches = search["val_batches"]
            self._val_iter = None


def plot_confidences(path: str, result: dict, labelled: int = 5) -> None:
    """softmax(alpha) of every candidate over the epochs; the `labelled` best at the end are coloured."""
    from matplotlib.figure import Figure  # no pyplot: draws with the Agg canvas, whatever the backend

    epochs, conf = result["epochs"], torch.tensor(result["confidence"])
    index = {tuple(c): g for g, c in enumerate(result["candidates"])}
    best = [index[tuple(r["attributes"])] for r in result["ranking"][:labelled]]
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.add_subplot()
    for g in range(len(index)):
        if g not in best:
            ax.plot(epochs, conf[:, g].tolist(), color="0.8", linewidth=1)
    for rank, g in enumerate(best, start=1):
        label = f"{rank}. " + ", ".join(result["candidates"][g])
        ax.plot(epochs, conf[:, g].tolist(), marker=".", linewidth=2, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("confidence softmax(alpha)")
    ax.set_title(f"Attribute search on {result['dataset']}: {len(index)} candidates (grey: the others)")
    ax.legend(title="best at the end", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
