"""Aggregate an output folder into the paper's tables.

    python tools/summarize.py output                      # markdown on stdout
    python tools/summarize.py output --format csv --out results.csv
    python tools/summarize.py output --expect-seeds 1,2,3 --methods CoOp,CoOp_ATP --paper

Prints each protocol it finds as its own table: (a) base-to-novel (Base / Novel / HM per dataset and method, seed
means, plus the Average over the 11 datasets with HM of the averages, as the paper computes it), (b) cross-dataset
and domain generalisation (accuracy per target of the ImageNet models evaluated on all classes), (c) all-class
few-shot (accuracy by shots per class, mean ± std over seeds, an Average row per method). Runs read that belong to no
table are listed, never dropped silently. A value built from fewer seeds or datasets than expected is marked with
``*`` and explained by a WARNING line.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.results import (  # noqa: E402
    CSV_FIELDS,
    PAPER_AVERAGES,
    PAPER_DATASETS,
    ResultsError,
    Stat,
    Summary,
    display_name,
    summarize,
    summary_records,
    unplaced,
)


def _cell(stat: Stat) -> str:
    if stat.mean is None:
        return "-"
    return f"{stat.mean:.2f}{'*' if stat.flagged else ''}"


def _table(header: list[str], rows: list[list[str]], numeric_from: int) -> list[str]:
    """Markdown table; columns from ``numeric_from`` on are right-aligned, except a trailing Seeds column."""
    align = [":--" if i < numeric_from or name == "Seeds" else "--:" for i, name in enumerate(header)]
    return ["| " + " | ".join(cells) + " |" for cells in [header, align, *rows]]


def _spread(stat: Stat) -> str:
    """A cell as mean ± std over seeds (the mean alone for one seed)."""
    if stat.mean is None or not stat.seeds or len(stat.seeds) == 1:
        return _cell(stat)
    return f"{stat.mean:.2f} ± {stat.std:.2f}{'*' if stat.flagged else ''}"


def _seeds(*stats: Stat) -> str:
    return ", ".join(str(s) for s in sorted(set().union(*(s.seeds for s in stats))))


def render_markdown(summary: Summary, paper: bool = False) -> str:
    lines: list[str] = []
    if summary.b2n:
        lines += ["## Base-to-novel generalization", "",
                  "Accuracy (%) averaged over seeds; HM = 2 * Base * Novel / (Base + Novel). The Average row "
                  f"averages Base and Novel over the {len(PAPER_DATASETS)} benchmark datasets and takes HM of "
                  "those averages. `*` marks a value built from fewer seeds or datasets than expected.", ""]
        rows = [["Average", r.method, _cell(r.base), _cell(r.novel), _cell(r.hm), _seeds(r.base, r.novel)]
                for r in summary.averages.values()]
        rows += [[display_name(r.dataset), r.method, _cell(r.base), _cell(r.novel), _cell(r.hm),
                  _seeds(r.base, r.novel)] for r in summary.b2n]
        lines += _table(["Dataset", "Method", "Base", "Novel", "HM", "Seeds"], rows, 2) + [""]
    if paper and summary.b2n_methods:
        lines += ["## Ours and the paper (average over the 11 datasets)", ""]
        rows = []
        for method in summary.b2n_methods:
            ours = summary.averages.get(method)
            reported = PAPER_AVERAGES.get(method)
            mine = [_cell(ours.base), _cell(ours.novel), _cell(ours.hm)] if ours else ["-"] * 3
            theirs = [f"{v:.2f}" for v in reported] if reported else ["-"] * 3
            delta = "-"
            if ours and reported and ours.hm.mean is not None:
                delta = f"{ours.hm.mean - reported[2]:+.2f}"
            rows.append([method, *mine, *theirs, delta])
        header = ["Method", "Base", "Novel", "HM", "Paper Base", "Paper Novel", "Paper HM", "HM - Paper"]
        lines += _table(header, rows, 1) + [""]
    if summary.xd:
        lines += ["## Cross-dataset and domain generalization (source: ImageNet, all classes)", "",
                  "Accuracy (%) averaged over seeds; `*` marks a value built from fewer seeds or targets than "
                  "expected.", ""]
        header = ["Method"] + [label for label, _ in summary.xd_columns] + ["Seeds"]
        rows = [[method] + [_cell(cells[key]) for _, key in summary.xd_columns] + [_seeds(*cells.values())]
                for method, cells in summary.xd.items()]
        lines += _table(header, rows, 1) + [""]
    if summary.fewshot:
        lines += ["## Few-shot classification (all classes)", "",
                  "Accuracy (%) on the whole test set, mean ± standard deviation over seeds, by shots per class in "
                  "training. The Average rows average the datasets. `*` marks a value built from fewer seeds or "
                  "datasets than expected.", ""]
        header = ["Dataset", "Method"] + [f"{k} shot{'s' * (k != 1)}" for k in summary.shots] + ["Seeds"]
        rows = [["Average" if r.dataset == "average" else display_name(r.dataset), r.method]
                + [_spread(r.cells[k]) for k in summary.shots] + [_seeds(*r.cells.values())] for r in summary.fewshot]
        lines += _table(header, rows, 2) + [""]
    left_out = unplaced(summary)
    if left_out:
        lines += ["## Runs in no table", "",
                  "Base-to-novel rows need training runs on the base classes (their evaluations on the novel "
                  "classes complete them); the cross-dataset table needs evaluations on all classes of other datasets "
                  "than ImageNet, the source; a training run on all classes of another dataset is a few-shot run.", ""]
        lines += [f"- {run.rel}: {run.method}, {run.kind} on {run.split} classes of {display_name(run.dataset)}"
                  for run in left_out] + [""]
    if summary.warnings:
        lines += ["## Warnings", ""] + [f"- WARNING: {w}" for w in summary.warnings] + [""]
    if summary.notes:
        lines += ["## Runs without a final result", ""] + [f"- {n}" for n in summary.notes] + [""]
    return "\n".join(lines)


def render_csv(summary: Summary, paper: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary_records(summary, paper))
    return buffer.getvalue()


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 1,2,3, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_selection_args(parser: argparse.ArgumentParser) -> None:
    """Options that choose which runs enter the tables (shared with the plotting tool)."""
    parser.add_argument("--expect-seeds", type=_int_list, metavar="1,2,3",
                        help="average exactly these seeds and flag every cell missing one "
                             "(default: every seed found for the method)")
    parser.add_argument("--methods", type=_name_list, metavar="A,B",
                        help="trainer names to show, in this order (default: all found)")
    parser.add_argument("--filter", action="append", default=[], metavar="SUBSTRING",
                        help="keep only runs whose folder path contains SUBSTRING (repeatable)")
    parser.add_argument("--train-filter", action="append", default=[], metavar="SUBSTRING",
                        help="like --filter, for training runs only")
    parser.add_argument("--eval-filter", action="append", default=[], metavar="SUBSTRING",
                        help="like --filter, for evaluation runs only")


def summarize_from_args(args: argparse.Namespace) -> Summary:
    return summarize(args.root, methods=args.methods, expect_seeds=args.expect_seeds, filters=tuple(args.filter),
                     train_filters=tuple(args.train_filter), eval_filters=tuple(args.eval_filter))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output root: holds <dataset>/<Trainer>/... and evaluation/<Trainer>/...")
    parser.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    parser.add_argument("--out", help="write the tables to this file instead of stdout")
    parser.add_argument("--paper", action="store_true", help="also print the paper's reported averages")
    add_selection_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = summarize_from_args(args)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    trained = sum(run.kind == "train" for run in summary.runs)
    print(f"read {len(summary.runs)} runs under {args.root} ({trained} training, {len(summary.runs) - trained} "
          f"evaluation); {len(summary.notes)} without a final result", file=sys.stderr)
    render = render_csv if args.format == "csv" else render_markdown
    text = render(summary, args.paper)
    # Markdown carries its warnings in the text; repeat them on stderr only where they would not show otherwise.
    if args.out or args.format == "csv":
        for warning in summary.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
        for note in summary.notes:
            print(f"NOTE: {note}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
