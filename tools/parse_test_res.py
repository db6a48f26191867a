"""Mean and spread of the final test results of one experiment over its seeds (Dassl-compatible usage).

    python tools/parse_test_res.py output/caltech101/CoOp_ATP/vit_b16_16shots/.../CTX_2_epo_100
    python tools/parse_test_res.py output/evaluation/CoOp_ATP/.../caltech101 --test-log
    python tools/parse_test_res.py output/evaluation/CoOp_ATP/vit_b16_16shots --test-log --multi-exp

The folder holds one sub-folder per seed (``seed1/...``). A seed's record (``results.json``) gives its final
metrics; seeds of different settings (other than the seed) are refused, naming what differs. Without a record,
the log is read (older outputs, the original's): training logs after
"Finish training" (earlier per-epoch validation results do not count); with ``--test-log`` evaluation-only logs
are read from "=> result" on. The last evaluation block wins. The spread is the population standard deviation
(``np.std``, as Dassl's parser reports it) or, with ``--ci95``, the 95% confidence half-width 1.96 * std / sqrt(n).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dassl.engine.records import (  # noqa: E402
    RECORD_FILE,
    differences,
    experiment_settings,
    identity_problem,
    load_record,
    result_problem,
)
from tools.results import METRICS, ResultsError, log_files, read_run  # noqa: E402

# A record's metric names -> the names of the log lines (and of this tool's output).
LOG_NAMES = {"error_rate": "error"}


def seed_result(seed_dir: Path, mode: str, keyword: str) -> tuple[Path, dict[str, float], dict | None] | None:
    """(where it was read, final metrics, the record) of one seed folder, from its record or else its log; a record
    that cannot be read or lacks what a result needs is an error naming it."""
    record, problem = load_record(str(seed_dir))
    problem = problem or (identity_problem(record) or result_problem(record) if record is not None else "")
    if problem:
        raise ResultsError(f"{seed_dir / RECORD_FILE} {problem}: rerun its job to write it again, or move the folder "
                           "away")
    if record is not None and record.get("status") == "finished" and record.get("metrics"):
        metrics = {LOG_NAMES.get(k, k): v for k, v in record["metrics"].items()}
        return (seed_dir / RECORD_FILE, metrics, record) if keyword in metrics else None
    result = read_run(seed_dir, mode, keyword) if log_files(seed_dir) else None
    return (result.path, result.metrics, None) if result else None


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def spread(values: list[float], ci95: bool = False) -> float:
    std = float(np.std(values))
    return 1.96 * std / np.sqrt(len(values)) if ci95 else std


def parse_directory(directory: Path, keyword: str = "accuracy", test_log: bool = False,
                    ci95: bool = False) -> dict[str, float]:
    """Print per-seed results and their summary; return the mean of every metric found."""
    print(f"Parsing files in {directory}")
    mode = "test" if test_log else "train"
    metrics = [keyword] + [m for m in METRICS if m != keyword]
    collected: dict[str, list[float]] = defaultdict(list)
    settings: dict[str, dict] = {}
    seed_dirs = sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
                       key=_natural_key)
    for seed_dir in seed_dirs:
        if not log_files(seed_dir) and not (seed_dir / RECORD_FILE).is_file():
            continue
        result = seed_result(seed_dir, mode, keyword)
        if result is None:
            hint = "" if test_log else " (for evaluation-only logs pass --test-log)"
            print(f"skip {seed_dir}: no final '{keyword}' result{hint}", file=sys.stderr)
            continue
        path, values, record = result
        if record is not None:
            settings.setdefault(record["setting"], record)
        found = [m for m in metrics if m in values]
        print(f"file: {path}. " + " ".join(f"{m}: {values[m]:.2f}%." for m in found))
        for m in found:
            collected[m].append(values[m])
    if len(settings) > 1:
        first, second = (experiment_settings(r["settings"]) for r in list(settings.values())[:2])
        raise ResultsError(f"the seed folders of {directory} hold runs of different settings "
                           f"({'; '.join(differences(first, second))}): they are not seeds of one experiment")
    if not collected:
        raise ResultsError(f"no final '{keyword}' result in any sub-folder of {directory}; expected "
                           "<dir>/seed<N>/log.txt" + ("" if test_log else ", or pass --test-log for evaluation logs"))
    print("===")
    print(f"Summary of directory: {directory}")
    for m, values in collected.items():
        print(f"* {m}: {np.mean(values):.2f}% +- {spread(values, ci95):.2f}%")
    print("===")
    return {m: float(np.mean(values)) for m, values in collected.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="folder with seed sub-folders (or, with --multi-exp, experiment folders)")
    parser.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval, not the std")
    parser.add_argument("--test-log", action="store_true", help="parse evaluation-only logs (after '=> result')")
    parser.add_argument("--multi-exp", action="store_true", help="the folder holds several experiment folders")
    parser.add_argument("--keyword", default="accuracy", help="metric that must be present (default: accuracy)")
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    try:
        if not directory.is_dir():
            raise ResultsError(f"{directory} is not a folder; pass the folder that holds the seed<N> folders")
        if not args.multi_exp:
            parse_directory(directory, args.keyword, args.test_log, args.ci95)
            return 0
        experiments = sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
                             key=_natural_key)
        per_experiment: dict[str, list[float]] = defaultdict(list)
        for experiment in experiments:
            try:
                means = parse_directory(experiment, args.keyword, args.test_log, args.ci95)
            except ResultsError as error:
                print(f"skip: {error}", file=sys.stderr)
                continue
            for m, value in means.items():
                per_experiment[m].append(value)
        if not per_experiment:
            raise ResultsError(f"no experiment folder under {directory} has results")
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("Average performance")
    for m, values in per_experiment.items():
        print(f"* {m}: {np.mean(values):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
