"""Speed benchmark: every exact fast path against the plain computation, side by side, on random weights.

    python tools/benchmark.py                                          # tiny CLIP on the CPU, under a minute
    python tools/benchmark.py --arch ViT-B/16 --device cuda --prec fp16 --classes 500 50 --warmup 2 --iters 5

Each case builds its model twice, from the same random weights, with the trainer's own `build_custom_clip`:
- fast, as the trainers run: prompts truncated after the longest EOT token, prompt-only text features computed
  once per test pass, all attribute-search candidates batched into few text-encoder calls, CoCoOp's images batched;
- plain, as the original computed: every prompt over the full 77-token context, text features recomputed for every
  batch, one text-encoder call per search candidate, CoCoOp's per-image loop.
It prints images/s of both paths, their ratio against the target, peak GPU memory, and the largest difference
between the two paths' logits on the same first batch (same parameters, so only float rounding may differ).

No weights are downloaded: CLIP is built with the sizes of the named OpenAI model (or tiny sizes for CPU smoke runs)
and random weights. Class names are random vocabulary words, one to five per class.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import gc
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yacs.config import CfgNode  # noqa: E402

from clip.model import CLIP, VisionTransformer, convert_weights  # noqa: E402
from dassl.engine.precision import autocast, resolve_precision  # noqa: E402
from dassl.optim import build_optimizer  # noqa: E402
from datasets import catalog  # noqa: E402
from trainers.base import PromptTrainer, optimizer_step, training_step  # noqa: E402
from trainers.config import get_cfg  # noqa: E402
from trainers.layout import CONTEXT_LENGTH, PromptLayout, tokenizer  # noqa: E402
from trainers.method import BenchmarkCase, methods  # noqa: E402

_TEXT = dict(context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)
# Constructor arguments of clip.model.CLIP for the OpenAI models (the values build_model infers from their weights).
ARCHS: dict[str, dict] = {
    "tiny": dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                 **{**_TEXT, "transformer_width": 64, "transformer_heads": 1, "transformer_layers": 2}),
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, **_TEXT),
    "RN101": dict(embed_dim=512, image_resolution=224, vision_layers=(3, 4, 23, 3), vision_width=64,
                  vision_patch_size=None, **_TEXT),
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                     **_TEXT),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                     **_TEXT),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
                     **{**_TEXT, "transformer_width": 768, "transformer_heads": 12}),
}
# Every case runs on ImageNet's base classes (the search: on its five bases).
DATASET = "ImageNet"


# --------------------------------------------------------------------------------------------------------------
# CLIP, classes and the plain path
# --------------------------------------------------------------------------------------------------------------
def build_clip(arch: str, device: torch.device, prec: str, seed: int) -> CLIP:
    """A frozen CLIP with random weights: fp16 as OpenAI ships it for `fp16`, else fp32 (bf16 autocasts)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown --arch '{arch}'; choose one of {', '.join(ARCHS)}")
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = CLIP(**ARCHS[arch])
    if prec == "fp16":
        convert_weights(model)
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def vocabulary_words() -> list[str]:
    """The alphabetic whole words of CLIP's vocabulary."""
    return sorted(w[:-4] for w in tokenizer().encoder if w.endswith("</w>") and w[:-4].isascii() and w[:-4].isalpha())


def random_classnames(n: int, seed: int) -> list[str]:
    """`n` distinct names of one to five vocabulary words, so that prompt lengths vary as real class names do."""
    words = vocabulary_words()
    rng, names = random.Random(seed), set()
    while len(names) < n:
        names.add(" ".join(rng.sample(words, rng.randint(1, 5))))
    return sorted(names)


# --------------------------------------------------------------------------------------------------------------
# The shared setting and the cases
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """What both paths of every case share: the frozen CLIP, the classes, the prompt shape and the run's knobs."""

    clip: CLIP
    classnames: list[str]
    attributes: list[tuple[str, int]]
    n_ctx: int
    prec: str
    device: torch.device
    batch: int
    eval_batches: int
    search_chunk: int
    seed: int

    def images(self, batch: int, stream: int = 0) -> torch.Tensor:
        size = self.clip.visual.input_resolution
        generator = torch.Generator(self.device).manual_seed(self.seed + 2 * stream)
        return torch.randn(batch, 3, size, size, generator=generator, device=self.device)

    def labels(self, batch: int, stream: int = 0) -> torch.Tensor:
        generator = torch.Generator(self.device).manual_seed(self.seed + 2 * stream + 1)
        return torch.randint(len(self.classnames), (batch,), generator=generator, device=self.device)

    def at_precision(self, prec: str) -> Setup:
        """This setting at another precision (`fp32` or `bf16`: over fp32 weights, copied from half ones)."""
        if prec == self.prec:
            return self
        clip_model = self.clip if self.clip.dtype == torch.float32 else copy.deepcopy(self.clip).float()
        return dataclasses.replace(self, clip=clip_model, prec=prec)

    def cfg(self, trainer: type[PromptTrainer], options: tuple = ()) -> CfgNode:
        """The config `trainer` would run with: ImageNet base classes, CoOp's optimiser, this run's prompt shape (the
        method's N_CTX* keys; its PROMPT_DEPTH* keys at most the layers a tiny CLIP has)."""
        cfg = get_cfg()
        node = trainer.METHOD.node
        n_att = self.attributes[0][1] if self.attributes else 0
        shape = []
        for key, value in cfg.TRAINER[node].items():
            if key.startswith("N_CTX"):
                shape += [f"TRAINER.{node}.{key}", self.n_ctx]
            elif key.startswith("PROMPT_DEPTH"):
                shape += [f"TRAINER.{node}.{key}", min(value, self.clip.transformer.layers)]
        cfg.merge_from_list([
            "DATASET.NAME", DATASET, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.NAME", "sgd", "OPTIM.LR", 0.002,
            *shape, "TRAINER.ATPROMPT.N_ATT1", n_att, "TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE", self.search_chunk,
            *options,
        ])
        return cfg


@dataclass(frozen=True)
class Case:
    """A benchmark row: a method's declared case (trainers/method.py `BenchmarkCase`), run by its trainer."""

    name: str
    trainer: type[PromptTrainer]
    spec: BenchmarkCase
    options: tuple = ()  # the case's config overrides, AnchorOPT's switch among them

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spec, name)  # kind, targets, batch, ... as declared

    @property
    def needs_vit(self) -> bool:
        return self.trainer.METHOD.needs_vit

    def target(self, n_cls: int) -> float | None:
        return self.targets[max(k for k in self.targets if k <= n_cls)]


def random_anchor(model: nn.Module, clip_model: CLIP, classnames: list[str], seed: int) -> None:
    """AnchorOPT's stage II reads its anchor from a file: a random one here."""
    learner = model.prompt_learner
    generator = torch.Generator().manual_seed(seed)
    learner.set_anchor(0.02 * torch.randn(learner.anchor.shape, generator=generator), "random")


ANCHOROPT = ("TRAINER.ANCHOROPT.USE_ANCHOROPT", True, "TRAINER.ANCHOROPT.N_CTX", 4)


def cases() -> list[Case]:
    """Every registered method's cases (<method>-<kind> unless named), then those of the prompt learners with
    AnchorOPT on (<method>-anchoropt-<kind>), which read a random anchor."""
    plain, anchored = [], []
    for trainer, card in methods():
        for spec in card.benchmark:
            name = spec.name or f"{card.scripts}-{spec.kind}"
            plain.append(Case(name, trainer, spec, spec.options))
            if card.plugins and spec.anchoropt:
                anchored.append(Case(f"{card.scripts}-anchoropt-{spec.kind}", trainer,
                                     dataclasses.replace(spec, prepare=random_anchor), spec.options + ANCHOROPT))
    return plain + anchored


# --------------------------------------------------------------------------------------------------------------
# What is timed: one training step, one test pass, one search step
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    """One path of a case ready to time: `step()` runs one iteration and returns the logits of its first batch."""

    step: Callable[[], torch.Tensor]
    images: int  # images one step processes
    model: nn.Module


def build(case: Case, s: Setup, fast: bool) -> tuple[nn.Module, CfgNode]:
    """The case's model, built by its trainer's own `build_custom_clip` and frozen by its `is_trainable`."""
    cfg = s.cfg(case.trainer, case.options + (() if fast else case.plain_options))
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(s.seed)  # both paths start from the same parameters (and the search's candidate order)
        random.seed(s.seed)
        model = case.trainer.build_custom_clip(cfg, s.clip, s.classnames, s.attributes)
    random.setstate(python_state)
    for name, param in model.named_parameters():
        param.requires_grad_(case.trainer.is_trainable(cfg, name))
    model.to(s.device).use_plain_computation(not fast)
    if case.prepare is not None:
        case.prepare(model, s.clip, s.classnames, s.seed)
    return model, cfg


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train_bench(case: Case, s: Setup, fast: bool) -> Bench:
    """One training step of the trainers (`training_step`, then `optimizer_step` with SGD) on one batch."""
    model, cfg = build(case, s, fast)
    optim = build_optimizer(trainable(model), cfg.OPTIM)
    batch = case.batch or s.batch
    images, labels = s.images(batch), s.labels(batch)

    def step() -> torch.Tensor:
        loss, logits = training_step(model, images, labels, s.prec, s.device)
        optimizer_step(loss, [optim])
        return (loss if logits is None else logits).detach().float()

    return Bench(step, batch, model)


def eval_bench(case: Case, s: Setup, fast: bool) -> Bench:
    """One test pass of `eval_batches` batches without gradients, as the trainer's `model_inference` runs them."""
    model, _ = build(case, s, fast)
    model.prompt_learner.eval()  # as a test sets the trainers' registered models
    params = trainable(model)
    batch, passes = case.batch or s.batch, case.eval_batches or s.eval_batches
    images = s.images(batch)

    def step() -> torch.Tensor:
        with torch.no_grad():
            for p in params:  # an in-place no-op marks the prompts as changed, so each pass starts without
                p.add_(0)  # cached text features, as a test after training does
            with autocast(s.prec, s.device):
                logits = [model(images).float() for _ in range(passes)]
        return logits[0]

    return Bench(step, batch * passes, model)


def search_bench(case: Case, s: Setup, fast: bool) -> Bench:
    """The search's two-phase step, as `AttributeSearch.forward_backward`: SGD on the prompts (train batch), then
    Adam on alpha (validation batch)."""
    model, cfg = build(case, s, fast)
    opts = cfg.TRAINER.ATTRIBUTE_SEARCH
    optim = build_optimizer(trainable(model), cfg.OPTIM)
    alpha = model.prompt_learner.alpha.requires_grad_(True)
    alpha_optim = torch.optim.Adam([alpha], lr=opts.ALPHA_LR, betas=tuple(opts.ALPHA_BETAS))
    batch = case.batch or s.batch
    images, labels = s.images(batch), s.labels(batch)
    val_images, val_labels = s.images(batch, stream=1), s.labels(batch, stream=1)

    def step() -> torch.Tensor:
        loss, logits = training_step(model, images, labels, s.prec, s.device)
        optimizer_step(loss, [optim])
        val_loss, _ = model.alpha_loss(val_images, val_labels, s.prec)
        optimizer_step(val_loss, [alpha_optim])
        return logits.detach().float()

    return Bench(step, batch, model)


BENCHES = {"train": train_bench, "eval": eval_bench, "search": search_bench}


# --------------------------------------------------------------------------------------------------------------
# Timing and the report
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Timing:
    logits: torch.Tensor | None  # of the first step, for the comparison between paths
    seconds: float = float("nan")  # median of the timed steps
    images: int = 0
    peak_bytes: int | None = None
    error: str = ""

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(make: Callable[[], Bench], device: torch.device, warmup: int, iters: int) -> Timing:
    """Build a path, run `warmup` untimed steps (the first one's logits are kept) and time `iters` more."""
    if device.type == "cuda":
        gc.collect()  # the previous path's tensors, so that the peak below is this path's alone
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        bench = make()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)  # a method that samples (AnchorOPT's arrangement) draws alike in both paths
            first = bench.step()
        for _ in range(warmup - 1):
            bench.step()
        times = []
        for _ in range(iters):
            synchronize(device)
            start = time.perf_counter()
            bench.step()
            synchronize(device)
            times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        return Timing(None, error="out of memory")
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Timing(first, statistics.median(times), bench.images, peak)


@dataclass
class Row:
    case: Case
    classes: int
    fast: Timing
    plain: Timing

    @property
    def ratio(self) -> float:
        return self.fast.images_per_s / self.plain.images_per_s

    @property
    def max_diff(self) -> float:
        if not self.case.compare or self.fast.logits is None or self.plain.logits is None:
            return float("nan")
        return (self.fast.logits - self.plain.logits).abs().max().item()


def gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def run_case(case: Case, setup: Setup, warmup: int, iters: int) -> Row:
    timings = {}
    for fast in (True, False):
        path_setup = setup if fast or case.plain_prec is None else setup.at_precision(case.plain_prec)
        timing = measure(functools.partial(BENCHES[case.kind], case, path_setup, fast), setup.device, warmup, iters)
        path = "fast" if fast else "plain"
        speed = timing.error or f"{timing.images_per_s:9.1f} img/s {1000 * timing.seconds:9.1f} ms/step"
        print(f"  {case.name:<22} {len(setup.classnames):>5} classes  {path:<5} {speed}  peak {gib(timing.peak_bytes)}",
              flush=True)
        timings[path] = timing
    return Row(case, len(setup.classnames), timings["fast"], timings["plain"])


def summary(rows: list[Row]) -> str:
    header = ("case", "classes", "fast img/s", "plain img/s", "ratio", "target", "peak fast / plain", "max |dlogit|")
    lines = [header]
    for r in rows:
        ok = not (r.fast.error or r.plain.error)
        target = r.case.target(r.classes)
        lines.append((
            r.case.name,
            str(r.classes),
            r.fast.error or f"{r.fast.images_per_s:.1f}",
            r.plain.error or f"{r.plain.images_per_s:.1f}",
            f"{r.ratio:.2f}x" if ok else "-",
            "-" if target is None else f">= {target:g}x",
            f"{gib(r.fast.peak_bytes)} / {gib(r.plain.peak_bytes)}",
            "-" if r.max_diff != r.max_diff else f"{r.max_diff:.1e}",  # NaN: not comparable
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join([text[0], "  ".join("-" * w for w in widths), *text[1:]])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [c.name for c in cases()]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny", choices=list(ARCHS), help="CLIP sizes (default tiny)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--prec", default="fp32", choices=("fp16", "fp32", "bf16"),
                        help="fp16: CLIP and prompts in half, as the original; bf16: autocast over fp32 weights")
    parser.add_argument("--classes", type=int, nargs="+", default=[20], help="class counts to run (default 20)")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--eval-batches", type=int, default=10, help="batches per test pass (default 10)")
    parser.add_argument("--n-ctx", type=int, default=2, help="class-context soft tokens (default 2)")
    parser.add_argument("--attributes", nargs="*", default=["color", "shape"], help="attribute words")
    parser.add_argument("--n-att", type=int, default=2, help="soft tokens per attribute (default 2)")
    parser.add_argument("--search-chunk", type=int, default=-1,
                        help="TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE of the fast search (default -1: automatic)")
    parser.add_argument("--cases", nargs="+", default=names, metavar="CASE", help=f"any of: {', '.join(names)}")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per path (default 1)")
    parser.add_argument("--iters", type=int, default=3, help="timed steps per path; the median counts (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, class names and inputs")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: the tiny model's operations are too small to gain "
                             "from more, and suffer most from busy cores; 0: torch's choice)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases) - set(names))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.warmup < 1 or args.iters < 1:
        parser.error("--warmup and --iters must be at least 1")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    prec = resolve_precision(args.prec, device)
    clip_model = build_clip(args.arch, device, prec, args.seed)
    attributes = [(w, args.n_att) for w in args.attributes]
    chosen = [c for c in cases() if c.name in args.cases]
    if not isinstance(clip_model.visual, VisionTransformer):
        skipped = [c.name for c in chosen if c.needs_vit]
        if skipped:
            print(f"Skipping {', '.join(skipped)}: they prompt a ViT image encoder, {args.arch} is a ResNet")
        chosen = [c for c in chosen if not c.needs_vit]
    print(f"CLIP {args.arch} (random weights) on {device}, {prec}; batch {args.batch}; attributes {attributes}, "
          f"{args.n_ctx} context tokens; search: {len(catalog.by_name(DATASET).bases)} bases; {args.warmup} warm-up "
          f"+ {args.iters} timed steps per path", flush=True)
    rows = []
    for n_cls in args.classes:
        setup = Setup(clip_model, random_classnames(n_cls, args.seed), attributes, args.n_ctx, prec, device,
                      args.batch, args.eval_batches, args.search_chunk, args.seed)
        length = PromptLayout(setup.classnames, args.n_ctx, attributes).seq_len
        print(f"{n_cls} classes: prompts of {length} tokens up to the last EOT (plain: the full {CONTEXT_LENGTH})",
              flush=True)
        rows += [run_case(case, setup, args.warmup, args.iters) for case in chosen]
    print()
    print(summary(rows))
    for note in dict.fromkeys(c.note for c in chosen if c.note):
        print(note)
    if device.type == "cpu":
        print("Peak memory is measured on GPUs only (torch.cuda.max_memory_allocated).")
    return rows


if __name__ == "__main__":
    main()
