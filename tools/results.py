"""Read run records (or logs) and aggregate them over seeds into the paper's tables.

A run is a folder holding its record ``results.json`` (dassl/engine/records.py): what ran, with which settings and
their fingerprints, and its final metrics. Values of one table cell come from runs of one setting (the same
fingerprint but for the seed), and an evaluation on the novel classes is paired with the training runs it
evaluated (through the training setting its record names); two settings are never averaged together.

Folders without a record (older outputs, the original's) are read from their logs. There, a ``seed<N>`` folder
holds ``log.txt`` (or ``log.txt-<timestamp>`` when an earlier log was kept) and where a run sits in the output tree
says what it is:

- ``<dataset>/<Trainer>/<setting...>/seed<N>``: a training run; its final test is the base-class accuracy
  (or the source accuracy of a cross-dataset model trained on all classes);
- ``evaluation/<Trainer>/<setting...>/<dataset>/seed<N>``: an evaluation-only run (novel classes, or a
  cross-dataset / domain-generalisation target);
- ``<dataset>/<Trainer>/<setting...>/seed<N>/evaluation``: an evaluation-only run kept inside its training run.

The class split of a run is read from the configuration dump in its log (``SUBSAMPLE_CLASSES: base|new|all``);
only when a log carries no dump is it guessed from the layout (training: base, evaluation: new).

Standard deviations are population deviations (``np.std``), as Dassl's result parser reports them.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dassl.engine.records import (
    RECORD_FILE,
    differences,
    experiment_settings,
    identity_problem,
    load_record,
    repeatable,
    result_problem,
)
from dassl.engine.run_folder import ended_in_failure
from dassl.utils.errors import UserError
from datasets import catalog
from trainers.families import FEWSHOT
from trainers.method import paper_averages, table_order

# Folder key -> display label, in the order of the paper's tables (datasets/catalog.py).
PAPER_DATASETS = {info.key: info.display for info in catalog.by_role("benchmark")}
DG_DATASETS = {info.key: info.display for info in catalog.by_role("variant")}
XD_SOURCE = catalog.XD_SOURCE
XD_TARGETS = [key for key in PAPER_DATASETS if key != XD_SOURCE]

# Method names are the records' (trainers/base.py `method_name`): <Method>[_ATP][_AnchorOPT], whatever alias ran;
# their order and the papers' Base / Novel / HM averages over the 11 datasets come from the methods' own cards.
METHOD_ORDER = table_order()
PAPER_AVERAGES = paper_averages()

METRICS = ("accuracy", "error", "macro_f1")
_METRIC_LINE = re.compile(r"^\s*\*\s+(\w+):\s+([-+0-9.,eE]+)\s*%?\s*$")
_TRAIN_LINE = re.compile(r"epoch \[\d+/\d+\]\s+batch \[\d+/\d+\]")
_RUN_ARG = re.compile(r"^(eval_only|no_train):\s*(True|False)\s*$", re.MULTILINE)
_SUBSAMPLE_LINE = re.compile(r"^\s+SUBSAMPLE_CLASSES:\s*(\w+)\s*$", re.MULTILINE)
_SEED_DIR = re.compile(r"^seed(\d+)$")
_SHOTS_DIR = re.compile(r"_(\d+)shots(/|$)")
_RESULT_START = "=> result"
_FINISH = "Finish training"


class ResultsError(UserError):
    """A user-facing problem with the output tree or the options; the message says how to fix it."""


# ----------------------------------------------------------------------------------------------- log parsing


def final_result(text: str, mode: str = "auto", keyword: str = "accuracy") -> dict[str, float] | None:
    """The metrics of the last evaluation block of a log, or None when it has no final result (a log that ends with
    the error line of a run interrupted or failed after its evaluation has none).

    mode "train": only blocks after the last "Finish training" count (earlier ones are validation passes);
    mode "test": only blocks from the first "=> result" on (evaluation-only logs);
    mode "auto": "train" when the log finished training, None when it trained but never finished, else "test".
    """
    if mode not in ("auto", "train", "test"):
        raise ResultsError(f"unknown log mode {mode!r}; use 'auto', 'train' or 'test'")
    if ended_in_failure(text):  # interrupted or failed after its result, before its record
        return None
    lines = text.splitlines()
    finished = [i for i, line in enumerate(lines) if _FINISH in line]
    if mode == "train" or (mode == "auto" and finished):
        if not finished:
            return None
        lines = lines[finished[-1] + 1:]
    elif mode == "auto" and _is_training(text):
        return None  # still training, or the run died before its final test
    blocks: list[dict[str, float]] = []
    started = mode != "test"
    for line in lines:
        if line.strip() == _RESULT_START:
            blocks.append({})
            started = True
            continue
        match = _METRIC_LINE.match(line)
        if not (match and started):
            continue
        try:
            value = float(match.group(2).replace(",", ""))
        except ValueError:
            continue
        if not blocks:
            blocks.append({})
        blocks[-1][match.group(1)] = value
    complete = [block for block in blocks if keyword in block]
    return complete[-1] if complete else None


def _is_training(text: str) -> bool:
    """Whether a log comes from a training run: from the printed arguments, else from progress lines."""
    args = dict(_RUN_ARG.findall(text))
    if args:
        return args.get("eval_only") == "False" and args.get("no_train") != "True"
    return any(_TRAIN_LINE.search(line) for line in text.splitlines())


def subsample_of(text: str) -> str | None:
    """The class split (base / new / all) from the configuration dump in a log, if the log has one."""
    found = _SUBSAMPLE_LINE.findall(text)
    return found[-1].lower() if found else None


def log_files(run_dir: Path) -> list[Path]:
    """The logs of a run folder, newest first (``log.txt`` is the first run; later runs add a timestamp)."""
    stamped = sorted((p for p in run_dir.glob("log.txt-*") if p.is_file()), reverse=True)
    plain = [run_dir / "log.txt"] if (run_dir / "log.txt").is_file() else []
    return stamped + plain


@dataclass(frozen=True)
class LogResult:
    path: Path
    metrics: dict[str, float]
    subsample: str | None
    skipped: tuple[Path, ...] = ()  # newer logs of the same folder without a final result


def read_run(run_dir: Path, mode: str = "auto", keyword: str = "accuracy") -> LogResult | None:
    """The newest log of a run folder that holds a final result."""
    skipped = []
    for path in log_files(run_dir):
        text = path.read_text(encoding="utf-8", errors="replace")
        metrics = final_result(text, mode, keyword)
        if metrics is not None:
            return LogResult(path, metrics, subsample_of(text), tuple(skipped))
        skipped.append(path)
    return None


# ------------------------------------------------------------------------------------------- output trees


def dataset_key(name: str) -> str:
    """Folder key of a dataset name, accepting registered names (``DescribableTextures``) as well."""
    info = catalog.lookup(name)
    return info.key if info else name


def display_name(key: str) -> str:
    info = catalog.lookup(key)
    return info.display if info else key


def dataset_order(key: str) -> tuple[int, str]:
    known = list(PAPER_DATASETS) + list(DG_DATASETS)
    return (known.index(key), "") if key in known else (len(known), key)


def method_order(name: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(name), "") if name in METHOD_ORDER else (len(METHOD_ORDER), name)


@dataclass(frozen=True)
class Run:
    method: str
    # What the run's table cell is: its record's setting fingerprint, or (a run known from its log alone) the path
    # parts between trainer and dataset/seed, e.g. "vit_b16_16shots/CTX_2_epo_100".
    setting: str
    dataset: str
    seed: int
    kind: str  # "train" or "eval"
    split: str  # "base", "new" or "all"
    rel: str  # folder relative to the output root, for filters and messages
    metrics: dict[str, float]
    settings: dict = field(default_factory=dict)  # a record's settings, to name what differs between two settings
    source: str | None = None  # an evaluation record's training setting
    note: str = ""  # something a reader must know about this run (e.g. the epoch it evaluated)
    shots: int | None = None

    @property
    def protocol(self) -> str:
        """"fewshot" (a training run on all classes of a dataset, the few-shot scripts' or any but the
        cross-dataset source's), "xd" (the cross-dataset source's training and the evaluations on all classes) or
        "base2new"."""
        if self.split != "all":
            return "base2new"
        if self.kind == "train" and (self.rel.startswith(FEWSHOT) or self.dataset != XD_SOURCE):
            return "fewshot"
        return "xd"


def run_from_record(record: dict, rel: str) -> Run:
    """The Run a finished training or evaluation record describes, one that `record_note` found nothing to say of."""
    source = record.get("source") or {}
    note = ""
    if source.get("epochs") and source.get("epoch") not in (None, source["epochs"]):
        note = f"{rel} evaluates epoch {source['epoch']} of a {source['epochs']}-epoch training run"
    method = record.get("method") or record["trainer"]
    # The split it read names its data where two settings are told apart (the few shots differ by seed anyway).
    data = {f"data {name}": checksum[:12] for name, checksum in ((record.get("data") or {}).get("split") or {}).items()}
    dataset = record.get("dataset_label") or record["dataset"]  # an image folder's own name
    return Run(method, record["setting"], dataset_key(dataset), record["seed"], record["kind"], record["subsample"],
               rel, record["metrics"], {**record["settings"], **data}, source.get("setting"), note,
               record.get("shots"))


def record_note(record: dict | None, problem: str, rel: str) -> str:
    """Why a folder's record gives no table value ("" when it gives one, or is of no table: a search)."""
    if record is None:
        problem = problem or "is gone"  # removed while the tree was read
    problem = problem or identity_problem(record) or result_problem(record)
    if problem:
        return f"{rel}/{RECORD_FILE} {problem}; left out of the tables (rerun its job to write it again)"
    if record.get("kind") not in ("train", "eval"):
        return ""
    if record["status"] != "finished":
        return f"{rel}: its record says it did not finish"
    if not repeatable(record["settings"]) or record["seed"] < 0:
        return f"{rel}: ran without a fixed seed (SEED -1), so its numbers cannot be repeated; left out of the tables"
    return ""


def _layout(parts: tuple[str, ...]) -> tuple[str, str, str, str, int] | None:
    """(kind, method, setting, dataset, seed) of a run folder from its path parts, None if not a run."""
    if parts[:1] == (FEWSHOT.rstrip("/"),):
        parts = parts[1:]
    if not parts:
        return None
    seed_match = _SEED_DIR.match(parts[-1])
    if seed_match and parts[0] == "evaluation":
        if len(parts) < 4:
            return None
        return "eval", parts[1], "/".join(parts[2:-2]), parts[-2], int(seed_match.group(1))
    if seed_match:
        if len(parts) < 3:
            return None
        return "train", parts[1], "/".join(parts[2:-1]), parts[0], int(seed_match.group(1))
    nested = len(parts) >= 4 and parts[-1] == "evaluation" and _SEED_DIR.match(parts[-2])
    if nested and parts[0] != "evaluation":
        return "eval", parts[1], "/".join(parts[2:-2]), parts[0], int(nested.group(1))
    return None


def collect_runs(root: str | Path) -> tuple[list[Run], list[str]]:
    """Every run under an output root that has a final result, plus notes on the runs without one."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"output root {str(root)!r} is not a folder; pass the folder the scripts wrote to")
    runs, notes, odd = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        parts = here.relative_to(root).parts
        if RECORD_FILE in filenames:  # a run that writes records is never read from its log
            record, problem = load_record(dirpath)
            note = record_note(record, problem, "/".join(parts))
            if note:
                notes.append(note)
            elif record.get("kind") in ("train", "eval"):
                runs.append(run_from_record(record, "/".join(parts)))
            continue
        if not any(name == "log.txt" or name.startswith("log.txt-") for name in filenames):
            continue
        layout = _layout(parts)
        if layout is None:
            if parts and _SEED_DIR.match(parts[-1]):
                odd.append(here)
            continue
        kind, method, setting, dataset, seed = layout
        rel = "/".join(parts)
        log = read_run(here)
        if log is None:
            notes.append(f"{rel}: no final result yet (still running, or it stopped early)")
            continue
        for path in log.skipped:
            notes.append(f"{rel}: {path.name} has no final result; using the older {log.path.name}")
        split = log.subsample or ("base" if kind == "train" else "new")
        shots = _SHOTS_DIR.search(setting)
        runs.append(Run(method, setting, dataset_key(dataset), seed, kind, split, rel, log.metrics,
                        shots=int(shots.group(1)) if shots else None))
    if odd and not runs:
        raise ResultsError(
            f"{odd[0]} is too shallow for the output layout: pass the output root, i.e. the folder that holds "
            "<dataset>/<Trainer>/.../seed<N> and evaluation/<Trainer>/.../<dataset>/seed<N>")
    if not runs:
        raise ResultsError(f"no seed<N> folder with a finished log under {root}; pass the output root "
                           "(the folder that holds <dataset>/<Trainer>/... and evaluation/)")
    return runs, notes


# ----------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """One table cell. ``flagged`` marks a value built from fewer seeds or datasets than expected."""

    mean: float | None
    std: float | None = None
    seeds: tuple[int, ...] = ()
    flagged: bool = False


def seed_stat(values: dict[int, float], expected: set[int]) -> Stat:
    """Mean and population std over the expected seeds that have a value."""
    used = {seed: value for seed, value in values.items() if seed in expected}
    if not used:
        return Stat(None, flagged=True)
    data = np.array([used[seed] for seed in sorted(used)])
    return Stat(float(data.mean()), float(data.std()), tuple(sorted(used)), flagged=bool(expected - used.keys()))


def harmonic_mean(base: Stat, novel: Stat) -> Stat:
    """HM = 2BN / (B + N) of the (seed-mean) base and novel accuracies."""
    if base.mean is None or novel.mean is None:
        return Stat(None, flagged=True)
    total = base.mean + novel.mean
    value = 2 * base.mean * novel.mean / total if total else 0.0
    return Stat(value, flagged=base.flagged or novel.flagged)


def average_stat(stats: list[Stat], expected_count: int) -> Stat:
    """Mean of cell means; flagged when a cell is missing or flagged itself."""
    present = [s for s in stats if s.mean is not None]
    if not present:
        return Stat(None, flagged=True)
    flagged = len(present) < expected_count or any(s.flagged for s in present)
    return Stat(float(np.mean([s.mean for s in present])), flagged=flagged)


def _seed_list(seeds: set[int] | tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


# ----------------------------------------------------------------------------------------------- the tables


@dataclass
class PairRow:
    dataset: str  # folder key, or "average"
    method: str
    base: Stat
    novel: Stat
    hm: Stat


@dataclass
class ShotsRow:
    dataset: str  # folder key, or "average"
    method: str
    cells: dict[int, Stat]  # shot count -> accuracy


@dataclass
class Summary:
    b2n_methods: list[str] = field(default_factory=list)
    b2n: list[PairRow] = field(default_factory=list)  # dataset-major, paper order
    averages: dict[str, PairRow] = field(default_factory=dict)
    xd_columns: list[tuple[str, str]] = field(default_factory=list)  # (label, key); keys "xd_avg" / "dg_avg"
    xd: dict[str, dict[str, Stat]] = field(default_factory=dict)  # method -> column key -> cell
    shots: list[int] = field(default_factory=list)  # the few-shot table's columns
    fewshot: list[ShotsRow] = field(default_factory=list)  # the Average rows first, then dataset-major
    notes: list[str] = field(default_factory=list)  # runs without a result (progress)
    warnings: list[str] = field(default_factory=list)  # gaps in the tables
    runs: list[Run] = field(default_factory=list)


def _matches(run: Run, filters: tuple[str, ...]) -> bool:
    return all(f in run.rel for f in filters)


def _index(runs: list[Run]) -> dict[tuple[str, str, str, str], list[Run]]:
    """The base-to-novel and cross-dataset runs by (method, dataset, split, kind)."""
    index: dict[tuple[str, str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.protocol != "fewshot":
            index[(run.method, run.dataset, run.split, run.kind)].append(run)
    return index


def _several_settings(what: str, kind: str, groups: dict[str, list[Run]]) -> ResultsError:
    """The error for one table cell's runs of several settings: which settings differ, where, and how to choose."""
    first, second = (group[0] for group in list(groups.values())[:2])
    changed = ("; ".join(differences(experiment_settings(first.settings), experiment_settings(second.settings)))
               if first.settings and second.settings else "")
    listed = "\n  ".join(sorted({run.rel.rsplit("/", 1)[0] for group in groups.values() for run in group}))
    option = "--train-filter" if kind == "train" else "--eval-filter"
    return ResultsError(
        f"several settings of {what} ({kind} runs){': ' + changed if changed else ''}, in\n  {listed}\n"
        f"keep one with --filter SUBSTRING or {option} SUBSTRING (matched against the run folder path)")


def _pick(index, method: str, dataset: str, split: str, kinds: tuple[str, ...]) -> list[Run]:
    """The runs of one method on one dataset and split, from the first kind that has any; one setting only."""
    for kind in kinds:
        group = index.get((method, dataset, split, kind), [])
        settings: dict[str, list[Run]] = defaultdict(list)
        for run in group:
            settings[run.setting].append(run)
        if len(settings) > 1:
            raise _several_settings(f"{method} on {display_name(dataset)}, {split} classes", kind, settings)
        if group:
            return group
    return []


def _accuracy(runs: list[Run]) -> dict[int, float]:
    return {run.seed: run.metrics["accuracy"] for run in runs}


def _check_pair(what: str, base: list[Run], novel: list[Run], evaluated: str = "novel-class") -> None:
    """Evaluations must evaluate models of one training setting, that of the training runs whose accuracy shares
    their row (base classes, or the cross-dataset source)."""
    trained = {run.setting for run in base if run.kind == "train"}
    sources = {run.source for run in novel if run.source}
    if len(sources) > 1:
        first, second = ({r.rel for r in novel if r.source == s}.pop() for s in list(sources)[:2])
        raise ResultsError(f"the {evaluated} evaluations of {what} evaluate models of {len(sources)} training "
                           f"settings ({first} and {second}); evaluate one setting's models, or choose the runs "
                           "with --eval-filter")
    if trained and sources and sources != trained:
        raise ResultsError(f"the {evaluated} evaluations of {what} evaluate training runs of another setting than "
                           f"its {'source' if evaluated == 'cross-dataset' else 'base-class'} runs ({novel[0].rel} "
                           f"against {base[0].rel}); evaluate the models of those runs, or choose the runs with "
                           "--train-filter / --eval-filter")


def _gap_warning(what: str, values: dict[int, float], expected: set[int]) -> str | None:
    if not values.keys() & expected:
        return f"{what}: no result"
    missing = expected - values.keys()
    if missing:
        return f"{what}: missing seed(s) {_seed_list(missing)}; averaged seed(s) {_seed_list(values.keys() & expected)}"
    return None


def summarize(root: str | Path, *, methods: list[str] | None = None, expect_seeds: list[int] | None = None,
              filters: tuple[str, ...] = (), train_filters: tuple[str, ...] = (),
              eval_filters: tuple[str, ...] = ()) -> Summary:
    """Build the base-to-novel and the cross-dataset / domain-generalisation tables of an output root."""
    runs, notes = collect_runs(root)
    found_methods = sorted({run.method for run in runs}, key=method_order)
    if methods:
        unknown = [m for m in methods if m not in found_methods]
        if unknown:
            raise ResultsError(f"no runs of method(s) {', '.join(unknown)} under {root}; "
                               f"found: {', '.join(found_methods)}")
    chosen = methods or found_methods
    runs = [run for run in runs if run.method in chosen and _matches(run, filters)
            and _matches(run, train_filters if run.kind == "train" else eval_filters)]
    if not runs:
        raise ResultsError("no run is left after --filter / --train-filter / --eval-filter; loosen the filters")
    summary = Summary(notes=notes, runs=runs)
    index = _index(runs)
    expected_given = set(expect_seeds) if expect_seeds else None
    _base_to_novel(summary, index, chosen, expected_given)
    _cross_dataset(summary, index, chosen, expected_given)
    _few_shot(summary, chosen, expected_given)
    return summary


def _base_to_novel(summary: Summary, index, chosen: list[str], expected_given: set[int] | None) -> None:
    pairs = [run for run in summary.runs if run.split in ("base", "new")]
    methods = [m for m in chosen if any(run.method == m for run in pairs)]
    datasets = sorted({run.dataset for run in pairs}, key=dataset_order)
    picked = {}
    for m in methods:
        for d in datasets:
            base, novel = _pick(index, m, d, "base", ("train", "eval")), _pick(index, m, d, "new", ("eval",))
            _check_pair(f"{m} on {display_name(d)}", base, novel)
            summary.warnings += sorted({run.note for run in base + novel if run.note})
            picked[(m, d)] = (_accuracy(base), _accuracy(novel))
    summary.b2n_methods = methods
    for method in methods:
        seeds_found = set().union(*(set(b) | set(n) for (m, _), (b, n) in picked.items() if m == method))
        expected = expected_given or seeds_found
        if expected_given and seeds_found - expected_given:
            summary.warnings.append(f"{method}: ignoring seed(s) {_seed_list(seeds_found - expected_given)} "
                                    "not listed in --expect-seeds")
        for dataset in datasets:
            base_values, novel_values = picked[(method, dataset)]
            where = f"{method} on {display_name(dataset)}"
            for what, values in ((f"{where}, base classes", base_values), (f"{where}, novel classes", novel_values)):
                gap = _gap_warning(what, values, expected)
                if gap:
                    summary.warnings.append(gap)
            base, novel = seed_stat(base_values, expected), seed_stat(novel_values, expected)
            summary.b2n.append(PairRow(dataset, method, base, novel, harmonic_mean(base, novel)))
    summary.b2n.sort(key=lambda row: dataset_order(row.dataset))  # stable: methods keep their order
    if not any(d in PAPER_DATASETS for d in datasets):
        return
    for method in methods:
        rows = [row for row in summary.b2n if row.method == method and row.dataset in PAPER_DATASETS]
        base = average_stat([row.base for row in rows], len(PAPER_DATASETS))
        novel = average_stat([row.novel for row in rows], len(PAPER_DATASETS))
        summary.averages[method] = PairRow("average", method, base, novel, harmonic_mean(base, novel))
        covered = {row.dataset for row in rows if row.base.mean is not None and row.novel.mean is not None}
        if len(covered) < len(PAPER_DATASETS):
            missing = [display_name(d) for d in PAPER_DATASETS if d not in covered]
            summary.warnings.append(f"{method}: Average covers {len(covered)} of {len(PAPER_DATASETS)} datasets "
                                    f"(missing base or novel: {', '.join(missing)})")


def _cross_dataset(summary: Summary, index, chosen: list[str], expected_given: set[int] | None) -> None:
    targets_found = {run.dataset for run in summary.runs
                     if run.protocol == "xd" and run.kind == "eval" and run.dataset != XD_SOURCE}
    has_source = any(run.protocol == "xd" and run.dataset == XD_SOURCE for run in summary.runs)
    if not targets_found and not has_source:
        return
    xd = [d for d in XD_TARGETS if d in targets_found]
    dg = [d for d in DG_DATASETS if d in targets_found]
    extra = sorted(targets_found - set(XD_TARGETS) - set(DG_DATASETS))
    groups = []  # (average column key, label, member datasets)
    columns = [(display_name(XD_SOURCE), XD_SOURCE)]
    if xd:
        columns += [(display_name(d), d) for d in XD_TARGETS] + [("XD Average", "xd_avg")]
        groups.append(("xd_avg", "XD Average", XD_TARGETS))
    if dg:
        columns += [(display_name(d), d) for d in DG_DATASETS] + [("DG Average", "dg_avg")]
        groups.append(("dg_avg", "DG Average", list(DG_DATASETS)))
    columns += [(d, d) for d in extra]
    summary.xd_columns = columns
    datasets = [key for _, key in columns if key not in ("xd_avg", "dg_avg")]
    for method in chosen:
        picked = {d: _pick(index, method, d, "all", ("eval",) if d != XD_SOURCE else ("train", "eval"))
                  for d in datasets}
        _check_pair(method, picked[XD_SOURCE], [run for d in datasets if d != XD_SOURCE for run in picked[d]],
                    "cross-dataset")
        values = {d: _accuracy(runs) for d, runs in picked.items()}
        if not any(values.values()):
            continue
        target_seeds = set().union(*(set(v) for d, v in values.items() if d != XD_SOURCE))
        expected = expected_given or target_seeds or set(values[XD_SOURCE])
        cells = {}
        for dataset in datasets:
            gap = _gap_warning(f"{method} cross-dataset, {display_name(dataset)}", values[dataset], expected)
            if gap:
                summary.warnings.append(gap)
            cells[dataset] = seed_stat(values[dataset], expected)
        for key, label, members in groups:
            cells[key] = average_stat([cells[d] for d in members], len(members))
            present = sum(cells[d].mean is not None for d in members)
            if present < len(members):
                summary.warnings.append(f"{method}: {label} covers {present} of {len(members)} targets")
        summary.xd[method] = cells


def _few_shot(summary: Summary, chosen: list[str], expected_given: set[int] | None) -> None:
    """Rows dataset x method, columns shot counts: the accuracy of the few-shot runs, over seeds; an Average row per
    method averages the datasets."""
    runs = [run for run in summary.runs if run.protocol == "fewshot"]
    if not runs:
        return
    groups: dict[tuple[str, str, int | None], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.method, run.dataset, run.shots)].append(run)
    summary.shots = sorted({run.shots for run in runs}, key=lambda shots: shots or 0)
    datasets = sorted({run.dataset for run in runs}, key=dataset_order)
    rows = []
    for method in [m for m in chosen if any(run.method == m for run in runs)]:
        seeds_found = {run.seed for run in runs if run.method == method}
        expected = expected_given or seeds_found
        for dataset in datasets:
            cells = {}
            for shots in summary.shots:
                group = groups.get((method, dataset, shots), [])
                settings: dict[str, list[Run]] = defaultdict(list)
                for run in group:
                    settings[run.setting].append(run)
                what = f"{method} on {display_name(dataset)}, {shots} shots"
                if len(settings) > 1:
                    raise _several_settings(what, "train", settings)
                values = _accuracy(group)
                gap = _gap_warning(what, values, expected) if group else None
                if gap:
                    summary.warnings.append(gap)
                cells[shots] = seed_stat(values, expected)
            if any(cell.mean is not None for cell in cells.values()):
                rows.append(ShotsRow(dataset, method, cells))
    averages = []
    for method in dict.fromkeys(row.method for row in rows):
        mine = [row for row in rows if row.method == method]
        if len(datasets) > 1:
            averages.append(ShotsRow("average", method, {shots: average_stat([row.cells[shots] for row in mine],
                                                                              len(datasets))
                                                         for shots in summary.shots}))
    summary.fewshot = averages + sorted(rows, key=lambda row: dataset_order(row.dataset))


def unplaced(summary: Summary) -> list[Run]:
    """The runs no table shows (e.g. base-class runs whose novel-class evaluations are missing do show, with a
    warning; a lone evaluation on all classes of the cross-dataset source does not)."""
    shown = {run.rel for run in summary.runs if run.protocol == "fewshot"}
    if summary.b2n:
        shown |= {run.rel for run in summary.runs if run.protocol == "base2new"}
    if summary.xd:
        shown |= {run.rel for run in summary.runs if run.protocol == "xd" and run.method in summary.xd}
    return [run for run in summary.runs if run.rel not in shown]


CSV_FIELDS = ["section", "dataset", "method", "shots", "base", "base_std", "novel", "novel_std", "hm", "accuracy",
              "accuracy_std", "seeds", "note"]


def summary_records(summary: Summary, paper: bool = False) -> list[dict[str, str]]:
    """The tables as flat rows (the CSV format that the plotting tool reads back)."""

    def num(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    def note(*stats: Stat) -> str:
        return "incomplete" if any(s.flagged for s in stats) else ""

    records = []
    blank = dict.fromkeys(CSV_FIELDS, "")
    for row in list(summary.averages.values()) + summary.b2n:
        label = "Average" if row.dataset == "average" else display_name(row.dataset)
        seeds = sorted(set(row.base.seeds) | set(row.novel.seeds))
        records.append({**blank, "section": "base2novel", "dataset": label, "method": row.method,
                        "base": num(row.base.mean), "base_std": num(row.base.std), "novel": num(row.novel.mean),
                        "novel_std": num(row.novel.std), "hm": num(row.hm.mean),
                        "seeds": " ".join(map(str, seeds)), "note": note(row.base, row.novel)})
    if paper:
        for method in summary.b2n_methods:
            if method in PAPER_AVERAGES:
                base, novel, hm = PAPER_AVERAGES[method]
                records.append({**blank, "section": "paper", "dataset": "Average", "method": method,
                                "base": num(base), "novel": num(novel), "hm": num(hm)})
    for method, cells in summary.xd.items():
        for label, key in summary.xd_columns:
            cell = cells[key]
            records.append({**blank, "section": "cross_dataset", "dataset": label, "method": method,
                            "accuracy": num(cell.mean), "accuracy_std": num(cell.std),
                            "seeds": " ".join(map(str, cell.seeds)), "note": note(cell)})
    for row in summary.fewshot:
        label = "Average" if row.dataset == "average" else display_name(row.dataset)
        for shots, cell in row.cells.items():
            records.append({**blank, "section": "fewshot", "dataset": label, "method": row.method,
                            "shots": str(shots), "accuracy": num(cell.mean), "accuracy_std": num(cell.std),
                            "seeds": " ".join(map(str, cell.seeds)), "note": note(cell)})
    return records
