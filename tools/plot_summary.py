"""Plots of the result tables: base-to-novel bars and few-shot learning curves, as PNG and PDF (vector, for papers).

    python tools/summarize.py output --format csv --out results.csv
    python tools/plot_summary.py results.csv                    # -> results_hm.png/.pdf (and results_fewshot.*)
    python tools/plot_summary.py output --metric novel --out novel.png

The source is a CSV written by summarize.py or an output root (summarised on the fly with the same selection
options). Base-to-novel: one group of bars per dataset, one bar per method, error bars of one standard deviation over
seeds (Base and Novel; HM has none), the axis from 0. Few-shot: accuracy against shots per class, one line per method,
one panel per dataset plus the average, error bars over seeds, as CoOp's curves. Hatched bars and hollow markers are
values built from fewer seeds or datasets than expected.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.results import ResultsError, summary_records  # noqa: E402
from tools.summarize import add_selection_args, summarize_from_args  # noqa: E402

LABELS = {"hm": "HM", "base": "Base", "novel": "Novel"}
FORMATS = (".png", ".pdf")


def read_records(source: Path) -> list[dict[str, str]]:
    with source.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    if not records or "section" not in records[0]:
        raise ResultsError(f"{source} is not a CSV written by tools/summarize.py --format csv")
    return records


def _number(text: str | None) -> float:
    return float(text) if text else np.nan


def _save(fig: Figure, out: Path) -> list[Path]:
    """`out` in the formats asked for: its own suffix, or PNG and PDF when it has neither."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out] if out.suffix in FORMATS else [out.with_suffix(suffix) for suffix in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def plot(records: list[dict[str, str]], out: Path, metric: str = "hm", methods: list[str] | None = None,
         title: str | None = None) -> list[Path]:
    """The chosen metric of the base-to-novel rows as grouped bars with their spread over seeds."""
    rows = [r for r in records if r["section"] == "base2novel" and r[metric]]
    if methods:
        rows = [r for r in rows if r["method"] in methods]
    if not rows:
        raise ResultsError(f"no base-to-novel {LABELS[metric]} values to plot; run the novel-class evaluations "
                           "first, or check --methods")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows if r["dataset"] != "Average"))
    if any(r["dataset"] == "Average" for r in rows):
        datasets.append("Average")  # the summary lists it first; on a chart it reads best at the end
    order = [m for m in methods or dict.fromkeys(r["method"] for r in rows) if any(r["method"] == m for r in rows)]
    cell = {(r["dataset"], r["method"]): r for r in rows}

    width_in = min(24.0, max(6.0, 1.2 + len(datasets) * (0.3 * len(order) + 0.3)))
    fig = Figure(figsize=(width_in, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(order)
    x = np.arange(len(datasets))
    for i, method in enumerate(order):
        found = [cell.get((d, method)) for d in datasets]
        values = [_number(r[metric]) if r else np.nan for r in found]
        spread = [_number(r.get(f"{metric}_std")) if r else np.nan for r in found]
        bars = ax.bar(x + (i - (len(order) - 1) / 2) * width, values, width, label=method,
                      yerr=None if all(math.isnan(s) for s in spread) else spread, capsize=2)
        for bar, r in zip(bars, found):
            bar.set_hatch("//" if r and r["note"] else "")
    ax.set_ylim(0, 100)  # from zero: bar lengths are the accuracies themselves
    ax.set_xticks(x, datasets, rotation=30, ha="right")
    ax.set_ylabel(f"{LABELS[metric]} (%)")
    ax.set_title(title or f"Base-to-novel {LABELS[metric]} per dataset")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any(r["note"] for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
        labels.append("incomplete")
    ax.legend(handles, labels, fontsize="small")
    return _save(fig, out)


def plot_fewshot(records: list[dict[str, str]], out: Path, methods: list[str] | None = None,
                 title: str | None = None) -> list[Path]:
    """Few-shot learning curves: accuracy against shots per class (log scale), a panel per dataset and the average."""
    rows = [r for r in records if r["section"] == "fewshot" and r["accuracy"]]
    if methods:
        rows = [r for r in rows if r["method"] in methods]
    if not rows:
        raise ResultsError("no few-shot values to plot; run the few-shot scripts (*_fewshot_train.sh) first")
    panels = [d for d in dict.fromkeys(r["dataset"] for r in rows) if d != "Average"]
    if any(r["dataset"] == "Average" for r in rows):
        panels.insert(0, "Average")
    order = [m for m in methods or dict.fromkeys(r["method"] for r in rows) if any(r["method"] == m for r in rows)]
    shots = sorted({int(r["shots"]) for r in rows})
    columns = min(4, len(panels))
    fig = Figure(figsize=(3.2 * columns, 2.8 * math.ceil(len(panels) / columns) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(math.ceil(len(panels) / columns), columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        for method in order:
            mine = sorted((int(r["shots"]), r) for r in rows if r["dataset"] == panel and r["method"] == method)
            if not mine:
                continue
            xs = [k for k, _ in mine]
            ys = [_number(r["accuracy"]) for _, r in mine]
            errors = [_number(r["accuracy_std"]) for _, r in mine]
            line = ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=method)
            flagged = [(k, y) for (k, r), y in zip(mine, ys) if r["note"]]
            if flagged:  # values built from fewer seeds or datasets than expected
                ax.scatter(*zip(*flagged), s=60, facecolors="white", edgecolors=line[0].get_color(), zorder=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_title(panel)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(order), 4), fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", metavar="source", help="CSV from summarize.py, or an output root")
    parser.add_argument("--metric", choices=sorted(LABELS), default="hm", help="the base-to-novel bars' metric")
    parser.add_argument("--out", help="the base-to-novel plot's path (.png or .pdf; no suffix: both); default "
                                      "<csv stem>_<metric> or <root>/summary_<metric>; the few-shot curves go beside "
                                      "it as ..._fewshot")
    parser.add_argument("--title")
    add_selection_args(parser)
    args = parser.parse_args(argv)
    source = Path(args.root)
    try:
        if source.is_dir():
            records = summary_records(summarize_from_args(args))
            default_out = source / f"summary_{args.metric}"
        elif source.is_file():
            records = read_records(source)
            default_out = source.with_name(f"{source.stem}_{args.metric}")
        else:
            raise ResultsError(f"{source} does not exist; pass a CSV from tools/summarize.py or an output root")
        out = Path(args.out) if args.out else default_out
        sections = {r["section"] for r in records}
        if not sections & {"base2novel", "fewshot"}:
            raise ResultsError("nothing to plot: the tables have no base-to-novel and no few-shot rows")
        saved = plot(records, out, args.metric, args.methods, args.title) if "base2novel" in sections else []
        if "fewshot" in sections:
            curves = out.with_name(out.stem.replace(f"_{args.metric}", "") + "_fewshot" + out.suffix)
            saved += plot_fewshot(records, curves, args.methods, args.title)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in saved:
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
