"""Grouped bars of the base-to-novel results: one group per dataset, one bar per method.

    python tools/summarize.py output --format csv --out results.csv
    python tools/plot_summary.py results.csv                    # -> results_hm.png
    python tools/plot_summary.py output --metric novel --out novel.png

The source is a CSV written by summarize.py or an output root (summarised on the fly with the same selection
options). Hatched bars are values built from fewer seeds or datasets than expected.
"""

from __future__ import annotations

import argparse
import csv
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


def read_records(source: Path) -> list[dict[str, str]]:
    with source.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    if not records or "section" not in records[0]:
        raise ResultsError(f"{source} is not a CSV written by tools/summarize.py --format csv")
    return records


def plot(records: list[dict[str, str]], out: Path, metric: str = "hm", methods: list[str] | None = None,
         title: str | None = None) -> Path:
    """Draw the chosen metric of the base-to-novel rows as grouped bars and save a PNG."""
    rows = [r for r in records if r["section"] == "base2novel" and r[metric]]
    if methods:
        rows = [r for r in rows if r["method"] in methods]
    if not rows:
        raise ResultsError(f"no base-to-novel {LABELS[metric]} values to plot; run the novel-class evaluations "
                           "first, or check --methods")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows if r["dataset"] != "Average"))
    if any(r["dataset"] == "Average" for r in rows):
        datasets.append("Average")  # the summary lists it first; on a chart it reads best at the end
    order = methods or list(dict.fromkeys(r["method"] for r in rows))
    order = [m for m in order if any(r["method"] == m for r in rows)]
    cell = {(r["dataset"], r["method"]): r for r in rows}

    width_in = min(24.0, max(6.0, 1.2 + len(datasets) * (0.3 * len(order) + 0.3)))
    fig = Figure(figsize=(width_in, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(order)
    x = np.arange(len(datasets))
    for i, method in enumerate(order):
        found = [cell.get((d, method)) for d in datasets]
        values = [float(r[metric]) if r else np.nan for r in found]
        hatches = ["//" if r and r["note"] else "" for r in found]
        bars = ax.bar(x + (i - (len(order) - 1) / 2) * width, values, width, label=method)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
    present = [float(r[metric]) for r in rows]
    ax.set_ylim(max(0.0, min(present) - 10), min(100.0, max(present) + 5))
    ax.set_xticks(x, datasets, rotation=30, ha="right")
    ax.set_ylabel(f"{LABELS[metric]} (%)")
    ax.set_title(title or f"Base-to-novel {LABELS[metric]} per dataset")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any(r["note"] for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
        labels.append("incomplete")
    ax.legend(handles, labels, fontsize="small")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", metavar="source", help="CSV from summarize.py, or an output root")
    parser.add_argument("--metric", choices=sorted(LABELS), default="hm")
    parser.add_argument("--out", help="PNG path (default: <csv stem>_<metric>.png, or <root>/summary_<metric>.png)")
    parser.add_argument("--title")
    add_selection_args(parser)
    args = parser.parse_args(argv)
    source = Path(args.root)
    try:
        if source.is_dir():
            records = summary_records(summarize_from_args(args))
            default_out = source / f"summary_{args.metric}.png"
        elif source.is_file():
            records = read_records(source)
            default_out = source.with_name(f"{source.stem}_{args.metric}.png")
        else:
            raise ResultsError(f"{source} does not exist; pass a CSV from tools/summarize.py or an output root")
        out = plot(records, Path(args.out) if args.out else default_out, args.metric, args.methods, args.title)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
