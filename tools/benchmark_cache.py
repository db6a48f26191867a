"""Feature-cache benchmark: a small protocol run three times through train.py, without the cache, with an empty
cache (cold) and with the cache the cold pass left (warm), printing the wall time of every run and of its
evaluations, and checking that every run prints the same result lines in all three passes.

    python tools/benchmark_cache.py                      # ViT-B/32-sized random CLIP on the CPU, a few minutes
    python tools/benchmark_cache.py --arch tiny          # seconds: a smoke run

The protocol, on generated image folders (the ImageFolder reader) and CoOp with random CLIP weights of the named
OpenAI model's sizes (no download): for each seed, training on the base classes (its final test is on the base test
images), evaluation of that model on the base and on the new classes (--eval-only), and its evaluation on
--targets other datasets (cross-dataset, all their classes). Everything is written under --work (default: a
temporary folder, removed at the end), the cache in <work>/cache.

"evaluation" is the time spent in the trainers' test(): reading, transforming and encoding the test images (or
reading their features from the cache) and scoring them. The rest of a run (starting it, loading CLIP, encoding
the prompts, training) is the same in every pass.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402
from dassl.engine.trainer import SimpleTrainer  # noqa: E402
from tools.benchmark import ARCHS, build_clip, random_classnames  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PASSES = ("off", "cold", "warm")


@dataclass
class Job:
    name: str
    argv: list[str]  # train.py arguments, without --output-dir and the cache options


@dataclass
class Result:
    total: float
    evaluation: float
    lines: list[str] = field(default_factory=list)  # the "* accuracy: ..." block of the log


# --------------------------------------------------------------------------------------------------------------
# Data, weights and the protocol
# --------------------------------------------------------------------------------------------------------------
def write_image_folder(root: Path, classnames: list[str], per_class: int, size: int, seed: int) -> Path:
    """<root>/<class>/<n>.jpg: smooth random images, each class with its own tint, JPEG as most benchmarks."""
    rng = np.random.default_rng(seed)
    for name in classnames:
        folder = root / name.replace(" ", "_")
        folder.mkdir(parents=True)
        tint = rng.uniform(0, 255, size=3)
        for index in range(per_class):
            coarse = np.clip(tint + rng.normal(0, 60, size=(8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(folder / f"{index:04d}.jpg", quality=90)
    return root


def write_weights(arch: str, path: Path, seed: int) -> int:
    """A random CLIP of `arch`'s sizes in OpenAI's fp16 layout; returns its input resolution."""
    model = build_clip(arch, torch.device("cpu"), "fp16", seed)
    torch.save(model.state_dict(), path)
    return model.visual.input_resolution


def protocol(work: Path, weights: Path, resolution: int, args: argparse.Namespace) -> list[Job]:
    source = work / "data" / "source"
    write_image_folder(source, random_classnames(args.classes, args.seed), args.images, resolution + 32, args.seed)
    targets = []
    for t in range(args.targets):
        names = random_classnames(args.classes, args.seed + 1 + t)
        targets.append(write_image_folder(work / "data" / f"target{t + 1}", names, args.images // 2,
                                          resolution + 32, args.seed + 1 + t))
    common = ["--trainer", "CoOp", "--dataset-config-file", str(REPO / "configs/datasets/image_folder.yaml"),
              "--config-file", str(REPO / "configs/trainers/CoOp/vit_b32.yaml")]
    options = ["MODEL.BACKBONE.NAME", str(weights), "INPUT.SIZE", f"({resolution}, {resolution})",
               "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATALOADER.TEST.BATCH_SIZE",
               str(args.batch), "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2", "TRAINER.COOP.N_CTX", "4"]
    jobs = []
    for seed in range(1, args.seeds + 1):
        trained = f"seed{seed}/train"
        jobs.append(Job(trained, ["--root", str(source), "--seed", str(seed), *common, *options,
                                  "DATASET.SUBSAMPLE_CLASSES", "base"]))
        evaluate = ["--seed", str(seed), "--eval-only", "--model-dir", f"{{out}}/{trained}", "--load-epoch", "1",
                    *common, *options]
        for subsample in ("base", "new"):
            jobs.append(Job(f"seed{seed}/test_{subsample}", ["--root", str(source), *evaluate,
                                                             "DATASET.SUBSAMPLE_CLASSES", subsample]))
        for t, target in enumerate(targets, start=1):
            jobs.append(Job(f"seed{seed}/xd_target{t}", ["--root", str(target), *evaluate]))
    return jobs


# --------------------------------------------------------------------------------------------------------------
# Running and timing
# --------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def timed_tests(times: list[float]):
    """Record the wall time of every SimpleTrainer.test() call while inside."""
    original = SimpleTrainer.test

    @functools.wraps(original)
    def test(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    SimpleTrainer.test = test
    try:
        yield
    finally:
        SimpleTrainer.test = original


def run_job(job: Job, out: Path, cache: Path, cached: bool) -> Result:
    argv = [a.replace("{out}", str(out)) for a in job.argv]
    argv = ["--output-dir", str(out / job.name), *argv, "FEATURE_CACHE.ENABLED", str(cached),
            "FEATURE_CACHE.DIR", str(cache)]
    times: list[float] = []
    start = time.perf_counter()
    with timed_tests(times), contextlib.redirect_stdout(io.StringIO()):
        code = train.main(argv)
    total = time.perf_counter() - start
    log = (out / job.name / "log.txt").read_text()
    if code != 0:
        raise SystemExit(f"{job.name} failed (exit status {code}); its log: {out / job.name / 'log.txt'}")
    lines = [line for line in log.splitlines() if line.startswith("* ")]
    return Result(total, sum(times), lines)


def report(jobs: list[Job], results: dict[str, list[Result]]) -> tuple[str, bool, float]:
    """The table, whether every job printed the same result lines in every pass, and the speed-up of the warm
    pass's evaluation-only runs over the pass without the cache."""
    header = ("run", *(f"{p} total / eval s" for p in PASSES), "eval off/warm", "accuracy", "same")
    rows, same_everywhere = [header], True
    for i, job in enumerate(jobs):
        runs = [results[p][i] for p in PASSES]
        same = all(r.lines == runs[0].lines for r in runs)
        same_everywhere &= same
        accuracy = next((line.split(":", 1)[1].strip() for line in runs[0].lines if "accuracy" in line), "-")
        rows.append((job.name, *(f"{r.total:6.2f} / {r.evaluation:6.2f}" for r in runs),
                     f"{runs[0].evaluation / runs[2].evaluation:.1f}x", accuracy, "yes" if same else "NO"))
    sums = {p: (sum(r.total for r in results[p]), sum(r.evaluation for r in results[p])) for p in PASSES}
    rows.append(("all runs", *(f"{t:6.2f} / {e:6.2f}" for t, e in sums.values()),
                 f"{sums['off'][1] / sums['warm'][1]:.1f}x", "", "yes" if same_everywhere else "NO"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    evals = [i for i, job in enumerate(jobs) if "--eval-only" in job.argv]
    ratio = sum(results["off"][i].evaluation for i in evals) / sum(results["warm"][i].evaluation for i in evals)
    return "\n".join(lines), same_everywhere, ratio


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B/32", choices=list(ARCHS), help="CLIP sizes (default ViT-B/32)")
    parser.add_argument("--classes", type=int, default=10, help="classes per dataset (default 10)")
    parser.add_argument("--images", type=int, default=40,
                        help="images per class of the source dataset, split 50/20/30 (default 40; targets: half)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the protocol (default 2)")
    parser.add_argument("--targets", type=int, default=3, help="cross-dataset targets (default 3)")
    parser.add_argument("--batch", type=int, default=32, help="DATALOADER.TEST.BATCH_SIZE (default 32)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, class names and images")
    parser.add_argument("--work", default="", help="folder for data, weights, outputs and the cache (kept)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def work_folder(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    """The benchmark's folder: --work (new or empty: the benchmark starts cold), kept; else a temporary one, removed
    at the end. Sets --threads first."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix=prefix))
    if args.work:
        if work.exists() and any(work.iterdir()):
            raise SystemExit(f"--work {work} is not empty: give a new or empty folder (the benchmark starts cold)")
        work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> tuple[bool, float]:
    args = parse_args(argv)
    with work_folder(args, "benchmark_cache-") as work:
        weights = work / "clip.pt"
        resolution = write_weights(args.arch, weights, args.seed)
        jobs = protocol(work, weights, resolution, args)
        print(f"CLIP {args.arch} (random weights), {resolution}x{resolution} images, {torch.get_num_threads()} "
              f"threads; {len(jobs)} runs per pass: {args.seeds} seeds x (train on base, test base, test new, "
              f"{args.targets} cross-dataset targets)", flush=True)
        results: dict[str, list[Result]] = {}
        for name in PASSES:
            started = time.perf_counter()
            results[name] = [run_job(job, work / name, work / "cache", name != "off") for job in jobs]
            print(f"pass {name}: {time.perf_counter() - started:.1f} s", flush=True)
        table, same, ratio = report(jobs, results)
        print()
        print(table)
        print(f"\nEvaluation-only runs: warm cache {ratio:.1f}x faster than without it; result lines identical in "
              f"all passes: {'yes' if same else 'NO'}")
        return same, ratio


if __name__ == "__main__":
    ok, _ = main()
    sys.exit(0 if ok else 1)
