"""Re-evaluating a protocol: one process per job (as the run scripts start them) against a sweep worker that runs
its jobs in one process (tools/sweep.py), each with an empty (cold) and a filled (warm) feature cache. Prints the
wall time of every pass, the per-job start-up (what a new process spends before its job: imports, reading CLIP),
and checks that every job prints the same result lines in every pass.

    python tools/benchmark_sweep.py                      # ViT-B/32-sized random CLIP on the CPU, a few minutes
    python tools/benchmark_sweep.py --arch tiny          # seconds: a smoke run

The protocol is tools/benchmark_cache.py's (generated image folders, CoOp, random weights of the named OpenAI
model's sizes): its trainings run once, then every pass runs all its evaluations (base and new classes, the
cross-dataset targets) again.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from tools import benchmark_cache  # noqa: E402
from tools.sweep import Worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PASSES = ("process, cold", "process, warm", "worker, cold", "worker, warm")


def argv_of(job: benchmark_cache.Job, out: Path, cache: Path) -> list[str]:
    argv = [a.replace("{out}", str(out.parent / "train")) for a in job.argv]  # the trainings' models
    return ["--output-dir", str(out / job.name), *argv, "FEATURE_CACHE.ENABLED", "True", "FEATURE_CACHE.DIR",
            str(cache)]


def result_lines(folder: Path) -> list[str]:
    log = (folder / "log.txt").read_text()
    return [line for line in log.splitlines() if line.startswith("* ")]


def in_processes(jobs: list[benchmark_cache.Job], out: Path, cache: Path) -> list[float]:
    """Each job in a process of its own; its wall time."""
    times = []
    for job in jobs:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "train.py"), *argv_of(job, out, cache)], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def in_a_worker(jobs: list[benchmark_cache.Job], out: Path, cache: Path) -> list[float]:
    """The jobs in one sweep worker, started before the first (its start-up counts in the first job's time)."""
    start = time.perf_counter()
    worker = Worker({})
    times = []
    try:
        for job in jobs:
            worker.send(argv_of(job, out, cache), out / f"{job.name}.console")
            code, _ = worker.receive()
            if code != 0:
                raise SystemExit(f"{job.name} failed in the worker; its output: {out / job.name}.console")
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
    finally:
        worker.close()
    return times


def main(argv: list[str] | None = None) -> tuple[bool, float]:
    args = benchmark_cache.parse_args(argv)
    with benchmark_cache.work_folder(args, "benchmark_sweep-") as work:
        weights = work / "clip.pt"
        resolution = benchmark_cache.write_weights(args.arch, weights, args.seed)
        protocol = benchmark_cache.protocol(work, weights, resolution, args)
        trainings = [job for job in protocol if "--eval-only" not in job.argv]
        evaluations = [job for job in protocol if "--eval-only" in job.argv]
        for job in trainings:  # the models the evaluations evaluate, once
            benchmark_cache.run_job(job, work / "train", work / "unused", cached=False)
        print(f"CLIP {args.arch} (random weights), {resolution}x{resolution} images, {torch.get_num_threads()} "
              f"threads; {len(evaluations)} evaluations per pass", flush=True)
        timings, lines = {}, {}
        for name in PASSES:
            out, cache = work / name.replace(", ", "_"), work / f"cache_{name.split(',')[0]}"
            if name.endswith("cold"):
                shutil.rmtree(cache, ignore_errors=True)
            run = in_processes if name.startswith("process") else in_a_worker
            timings[name] = run(evaluations, out, cache)
            lines[name] = [result_lines(out / job.name) for job in evaluations]
            print(f"pass {name}: {sum(timings[name]):.1f} s", flush=True)
        same = all(lines[name] == lines[PASSES[0]] for name in PASSES)
        # A separate process pays start-up and the evaluation; a warm worker's later jobs pay the evaluation alone.
        startup = statistics.mean(timings["process, warm"]) - statistics.mean(timings["worker, warm"][1:])
        ratio = sum(timings["process, cold"]) / sum(timings["worker, warm"])
        print()
        for name in PASSES:
            per_job = sum(timings[name]) / len(evaluations)
            print(f"{name:<15} {sum(timings[name]):7.1f} s in all, {per_job:6.2f} s per evaluation")
        print(f"\nper-job start-up of a new process (imports, reading CLIP): {startup:.2f} s; a worker pays it once "
              f"({timings['worker, warm'][0]:.2f} s for its first job)")
        print(f"re-evaluating the protocol from a warm cache in a sweep worker: {ratio:.1f}x faster than one process "
              f"per job from a cold cache ({sum(timings['process, cold']) / sum(timings['process, warm']):.1f}x with "
              f"one process per job and a warm cache); result lines identical in all passes: "
              f"{'yes' if same else 'NO'}")
        return same, ratio


if __name__ == "__main__":
    ok, _ = main()
    sys.exit(0 if ok else 1)
