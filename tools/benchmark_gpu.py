"""The GPU benchmark in one call: tools/benchmark.py's cases over precisions and class counts, one JSON line each.

    python tools/benchmark_gpu.py > gpu.jsonl   # ViT-B/16 sizes, random weights, fp16 and bf16, 50 and 500 classes

Each case runs as in tools/benchmark.py (the same models, steps, timing and peak-memory measurement): the trainers'
fast path and the original's structure side by side, from the same random parameters. Standard output gets one JSON
object per case and setting (throughput of both paths, their ratio, peak GPU memory, the largest logit difference);
standard error gets the progress lines and the summary table of tools/benchmark.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip.model import VisionTransformer  # noqa: E402
from dassl.engine.precision import resolve_precision  # noqa: E402
from tools import benchmark  # noqa: E402

DEFAULT_CASES = ["coop-train", "coop-eval"]  # CoOp+ATPrompt: training step and test pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [c.name for c in benchmark.cases()]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B/16", choices=list(benchmark.ARCHS), help="CLIP sizes (ViT-B/16)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--precs", nargs="+", default=["fp16", "bf16"], choices=("fp16", "fp32", "bf16"),
                        help="precisions, each as tools/benchmark.py's --prec (default fp16 bf16)")
    parser.add_argument("--classes", type=int, nargs="+", default=[50, 500], help="class counts (default 50 500)")
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=names, metavar="CASE",
                        help=f"default {' '.join(DEFAULT_CASES)}; any of: {', '.join(names)}")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--eval-batches", type=int, default=20, help="batches per test pass (default 20)")
    parser.add_argument("--n-ctx", type=int, default=2, help="class-context soft tokens (default 2)")
    parser.add_argument("--n-att", type=int, default=2, help="soft tokens per attribute, color and shape (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per path (default 2)")
    parser.add_argument("--iters", type=int, default=5, help="timed steps per path; the median counts (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, class names and inputs")
    return parser.parse_args(argv)


def finite(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def record(row: benchmark.Row, args: argparse.Namespace, prec: str, device: torch.device) -> dict:
    """One case at one setting, as a JSON-ready dict (None where a path ran out of memory or there is no value)."""
    fast, plain = row.fast, row.plain
    ok = not (fast.error or plain.error)
    target = row.case.target(row.classes)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "case": row.case.name, "classes": row.classes, "prec": prec, "arch": args.arch, "device": gpu,
        "batch": row.case.batch or args.batch,
        "fast_img_per_s": None if fast.error else round(fast.images_per_s, 1),
        "plain_img_per_s": None if plain.error else round(plain.images_per_s, 1),
        "ratio": round(row.ratio, 2) if ok else None, "target": target,
        "fast_peak_gib": None if fast.peak_bytes is None else round(fast.peak_bytes / 2**30, 2),
        "plain_peak_gib": None if plain.peak_bytes is None else round(plain.peak_bytes / 2**30, 2),
        "max_abs_dlogit": finite(row.max_diff, 7), "errors": {"fast": fast.error, "plain": plain.error},
    }


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    cases = [c for c in benchmark.cases() if c.name in args.cases]
    attributes = [("color", args.n_att), ("shape", args.n_att)]
    records = []
    for requested in args.precs:
        with contextlib.redirect_stdout(sys.stderr):  # stdout holds the JSON lines alone
            prec = resolve_precision(requested, device)
            clip_model = benchmark.build_clip(args.arch, device, prec, args.seed)
        if not isinstance(clip_model.visual, VisionTransformer):  # cases that prompt a ViT (MaPLe, IVLP, PromptSRC)
            cases = [c for c in cases if not c.needs_vit]
        rows = []
        for n_cls in args.classes:
            setup = benchmark.Setup(clip_model, benchmark.random_classnames(n_cls, args.seed), attributes, args.n_ctx,
                                    prec, device, args.batch, args.eval_batches, -1, args.seed)
            for case in cases:
                with contextlib.redirect_stdout(sys.stderr):
                    row = benchmark.run_case(case, setup, args.warmup, args.iters)
                rows.append(row)
                records.append(record(row, args, prec, device))
                print(json.dumps(records[-1]), flush=True)
        del clip_model
        print(f"\n{args.arch}, {prec}:\n{benchmark.summary(rows)}", file=sys.stderr)
    return records


if __name__ == "__main__":
    main()
