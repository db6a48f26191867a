"""Result tools on synthetic output trees: log parsing, seed aggregation, the paper's tables, CSV, plots."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools import parse_test_res, plot_summary, run_protocol, summarize
from tools.results import ResultsError, collect_runs, final_result, read_run, subsample_of
from tools.results import summarize as build_summary

REPO = Path(__file__).resolve().parents[1]


def config_dump(subsample: str, name: str = "Caltech101", eval_only: bool = False) -> str:
    return (
        f"***************\n** Arguments **\n***************\neval_only: {eval_only}\nno_train: False\n"
        f"opts: ['DATASET.SUBSAMPLE_CLASSES', '{subsample}']\n"
        "***************\n** Config **\n***************\n"
        "DATALOADER:\n  NUM_WORKERS: 8\n"
        f"DATASET:\n  NAME: {name}\n  NUM_SHOTS: 16\n  ROOT: /data\n  SUBSAMPLE_CLASSES: {subsample}\n"
        "OPTIM:\n  MAX_EPOCH: 2\n"
    )


def result_block(acc: float, total: int = 1234, decimals: int = 3) -> str:
    correct = round(total * acc / 100)
    return (
        "=> result\n"
        f"* total: {total:,}\n* correct: {correct:,}\n"
        f"* accuracy: {acc:.{decimals}f}%\n* error: {100 - acc:.2f}%\n* macro_f1: {acc - 1:.2f}%\n"
    )


def train_log(acc: float, val_accs=(11.0, 22.0), subsample: str = "base", decimals: int = 3) -> str:
    text = config_dump(subsample)
    for epoch, val in enumerate(val_accs, 1):
        text += f"epoch [{epoch}/2] batch [1/1] time 0.100 (0.100) data 0.010 (0.010) loss 1.0000 (1.0000) "
        text += "lr 2.0000e-03 eta 0:00:01\nEvaluate on the *val* set\n" + result_block(val)
    text += "Finish training\nDeploy the last-epoch model\nEvaluate on the *test* set\n"
    return text + result_block(acc, decimals=decimals) + "Elapsed: 0:00:03\n"


def eval_log(acc: float, subsample: str = "new", decimals: int = 1) -> str:
    header = config_dump(subsample, eval_only=True) + "Evaluate on the *test* set\n"
    return header + result_block(acc, decimals=decimals)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# Base accuracies near 80 and novel ones near 60, so confusing the two cannot go unnoticed.
BASE = {
    ("CoOp", "caltech101"): {1: 80.0, 2: 82.0, 3: 84.0},
    ("CoOp", "dtd"): {1: 70.0, 2: 71.0, 3: 72.0},
    ("CoOp_ATP", "caltech101"): {1: 81.0, 2: 83.0, 3: 85.0},
    ("CoOp_ATP", "dtd"): {1: 75.0, 2: 76.0},  # seed 3 missing
    ("CoOp_ATP", "attribute_world"): {1: 90.0, 2: 90.0, 3: 90.0},
}
NOVEL = {
    ("CoOp", "caltech101"): {1: 60.0, 2: 62.0, 3: 64.0},
    ("CoOp", "dtd"): {1: 40.0, 2: 42.0, 3: 44.0},
    ("CoOp_ATP", "caltech101"): {1: 66.0, 2: 67.0, 3: 68.0},
    ("CoOp_ATP", "dtd"): {1: 50.0, 2: 51.0, 3: 52.0},
    ("CoOp_ATP", "attribute_world"): {1: 70.0, 2: 70.0, 3: 70.0},
}


def hm(b: float, n: float) -> float:
    return 2 * b * n / (b + n)


@pytest.fixture
def output(tmp_path: Path) -> Path:
    root = tmp_path / "output"
    for (method, dataset), seeds in BASE.items():
        for seed, acc in seeds.items():
            write(root / dataset / method / "vit_b16_16shots" / "CTX_2_epo_100" / f"seed{seed}" / "log.txt",
                  train_log(acc))
    for (method, dataset), seeds in NOVEL.items():
        for seed, acc in seeds.items():
            write(root / "evaluation" / method / "vit_b16_16shots" / "nctx2" / dataset / f"seed{seed}" / "log.txt",
                  eval_log(acc))
    return root


def add_cross_dataset(root: Path) -> None:
    for seed, acc in {1: 71.0, 2: 72.0}.items():
        write(root / "imagenet" / "CoOp_ATP" / "vit_b16_16shots" / "xd" / f"seed{seed}" / "log.txt",
              train_log(acc, subsample="all"))
    targets = {"caltech101": 93.0, "dtd": 45.0, "imagenetv2": 64.0, "imagenet_a": 50.0}
    for seed in (1, 2):
        for dataset, acc in targets.items():
            write(root / "evaluation" / "CoOp_ATP" / "vit_b16_16shots" / "xd4" / dataset / f"seed{seed}" / "log.txt",
                  eval_log(acc + seed, subsample="all"))


# ------------------------------------------------------------------------------------------------ parsing


def test_training_log_yields_final_test_not_epoch_validations():
    metrics = final_result(train_log(81.234))
    assert metrics["accuracy"] == pytest.approx(81.234)
    assert metrics["total"] == 1234 and metrics["correct"] == round(1234 * 0.81234)
    assert metrics["error"] == pytest.approx(18.77) and metrics["macro_f1"] == pytest.approx(80.23)


@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_any_number_of_decimals(decimals):
    assert final_result(eval_log(67.125, decimals=decimals))["accuracy"] == pytest.approx(round(67.125, decimals))


def test_unfinished_training_has_no_result_but_eval_log_does():
    unfinished = train_log(80.0).split("Finish training")[0]
    assert "=> result" in unfinished
    assert final_result(unfinished) is None
    assert final_result(unfinished, mode="train") is None
    text = "Evaluate on the *val* set\n" + result_block(30.0) + "Evaluate on the *test* set\n" + result_block(62.5)
    assert final_result(text)["accuracy"] == 62.5
    assert final_result(text, mode="test")["accuracy"] == 62.5


def test_a_log_that_ends_with_an_error_has_no_result_for_the_tables_or_the_scripts(tmp_path):
    # A run interrupted between printing its result and writing its record: its log ends with the error line.
    log = train_log(80.0) + "error: interrupted\n"
    assert all(final_result(log, mode=mode) is None for mode in ("auto", "train", "test"))
    write(tmp_path / "seed1" / "log.txt", log)
    assert not run_protocol.logged_as_finished("train", str(tmp_path / "seed1"))
    write(tmp_path / "seed2" / "log.txt", train_log(80.0))
    assert run_protocol.logged_as_finished("train", str(tmp_path / "seed2"))


def test_training_is_recognised_from_the_printed_arguments():
    # A training run that died after a validation pass, logged without progress lines: not a final result.
    text = config_dump("base") + "Evaluate on the *val* set\n" + result_block(30.0)
    assert final_result(text) is None
    assert final_result(text.replace("eval_only: False", "eval_only: True"))["accuracy"] == 30.0


def test_incomplete_last_block_falls_back_to_last_complete_one():
    text = eval_log(61.0) + "=> result\n* total: 1,000\n"
    assert final_result(text)["accuracy"] == 61.0


def test_subsample_comes_from_config_dump_not_the_opts_line():
    text = "opts: ['DATASET.SUBSAMPLE_CLASSES', 'base']\n" + config_dump("new").split("***************\n** Config")[1]
    assert subsample_of(text) == "new"
    assert subsample_of("no config here") is None


def test_newest_log_with_a_result_wins(tmp_path):
    run = tmp_path / "seed1"
    write(run / "log.txt", eval_log(50.0))
    write(run / "log.txt-2025-01-02-10-00-00", eval_log(55.0))
    write(run / "log.txt-2025-03-01-09-00-00", train_log(0.0).split("Finish training")[0])  # died early
    result = read_run(run)
    assert result.metrics["accuracy"] == 55.0
    assert [p.name for p in result.skipped] == ["log.txt-2025-03-01-09-00-00"]


def test_runs_are_located_and_labelled_from_paths_and_logs(output):
    write(output / "caltech101" / "DePT" / "cfg_16shots" / "CTX_4_epo_10" / "seed1" / "evaluation" / "log.txt",
          eval_log(63.0))
    write(output / "dtd" / "CoOp" / "vit_b16_16shots" / "CTX_2_epo_100" / "seed9" / "log.txt",
          train_log(1.0).split("Finish training")[0])
    runs, notes = collect_runs(output)
    by_rel = {run.rel: run for run in runs}
    train = by_rel["caltech101/CoOp_ATP/vit_b16_16shots/CTX_2_epo_100/seed2"]
    assert (train.kind, train.method, train.dataset, train.seed, train.split) == ("train", "CoOp_ATP", "caltech101",
                                                                                  2, "base")
    assert train.setting == "vit_b16_16shots/CTX_2_epo_100"
    novel = by_rel["evaluation/CoOp_ATP/vit_b16_16shots/nctx2/dtd/seed3"]
    assert (novel.kind, novel.dataset, novel.split, novel.setting) == ("eval", "dtd", "new", "vit_b16_16shots/nctx2")
    nested = by_rel["caltech101/DePT/cfg_16shots/CTX_4_epo_10/seed1/evaluation"]
    assert (nested.kind, nested.method, nested.dataset, nested.seed, nested.split) == ("eval", "DePT", "caltech101",
                                                                                       1, "new")
    assert len(notes) == 1 and "seed9" in notes[0]


def test_shallow_root_and_empty_root_are_clear_errors(output, tmp_path):
    with pytest.raises(ResultsError, match="output root"):
        collect_runs(output / "caltech101" / "CoOp" / "vit_b16_16shots")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="no seed<N> folder"):
        collect_runs(tmp_path / "empty")


# ------------------------------------------------------------------------------------------- aggregation


def test_base_to_novel_means_std_hm_and_average(output):
    summary = build_summary(output)
    rows = {(r.dataset, r.method): r for r in summary.b2n}
    assert [r.dataset for r in summary.b2n[:2]] == ["caltech101", "caltech101"]
    assert summary.b2n[-1].dataset == "attribute_world"  # unknown datasets come after the paper's ones
    row = rows[("caltech101", "CoOp")]
    assert row.base.mean == pytest.approx(82.0) and row.novel.mean == pytest.approx(62.0)
    assert row.base.std == pytest.approx(np.std([80.0, 82.0, 84.0]))  # population std, as Dassl
    assert row.hm.mean == pytest.approx(hm(82.0, 62.0))
    assert not (row.base.flagged or row.novel.flagged or row.hm.flagged)
    assert row.base.seeds == (1, 2, 3)

    atp_dtd = rows[("dtd", "CoOp_ATP")]
    assert atp_dtd.base.mean == pytest.approx(75.5) and atp_dtd.base.flagged and atp_dtd.hm.flagged
    assert any("CoOp_ATP on DTD, base classes: missing seed(s) 3" in w for w in summary.warnings)

    average = summary.averages["CoOp"]
    assert average.base.mean == pytest.approx((82.0 + 71.0) / 2)
    assert average.novel.mean == pytest.approx((62.0 + 42.0) / 2)
    assert average.hm.mean == pytest.approx(hm(76.5, 52.0))  # HM of the averages, not the average of HMs
    assert average.base.flagged  # 2 of 11 datasets
    assert any("CoOp: Average covers 2 of 11" in w for w in summary.warnings)
    # attribute_world is not one of the paper's datasets, so it stays out of the average
    assert summary.averages["CoOp_ATP"].novel.mean == pytest.approx((67.0 + 51.0) / 2)


def test_expect_seeds_flags_every_gap_and_drops_extra_seeds(output):
    summary = build_summary(output, expect_seeds=[1, 2, 3, 4], methods=["CoOp"])
    assert summary.b2n_methods == ["CoOp"]
    gaps = [w for w in summary.warnings if "missing seed(s) 4" in w]
    assert len(gaps) == 4  # base and novel on caltech101 and dtd
    assert all(r.base.flagged and r.novel.flagged for r in summary.b2n if r.method == "CoOp")
    only_two = build_summary(output, expect_seeds=[1, 2])
    row = next(r for r in only_two.b2n if (r.dataset, r.method) == ("caltech101", "CoOp"))
    assert row.base.mean == pytest.approx(81.0) and not row.base.flagged
    assert any("ignoring seed(s) 3" in w for w in only_two.warnings)


def test_missing_novel_run_is_reported_not_hidden(output):
    for seed in (1, 2, 3):
        path = output / "evaluation" / "CoOp" / "vit_b16_16shots" / "nctx2" / "dtd" / f"seed{seed}" / "log.txt"
        path.unlink()
    summary = build_summary(output)
    row = next(r for r in summary.b2n if (r.dataset, r.method) == ("dtd", "CoOp"))
    assert row.novel.mean is None and row.hm.mean is None and row.base.mean == pytest.approx(71.0)
    assert "CoOp on DTD, novel classes: no result" in summary.warnings


def test_several_settings_are_ambiguous_until_filtered(output):
    for seed in (1, 2, 3):
        write(output / "caltech101" / "CoOp" / "vit_b16_16shots" / "CTX_4_epo_50" / f"seed{seed}" / "log.txt",
              train_log(10.0))
    with pytest.raises(ResultsError, match="--filter"):
        build_summary(output)
    summary = build_summary(output, train_filters=("CTX_2",))
    row = next(r for r in summary.b2n if (r.dataset, r.method) == ("caltech101", "CoOp"))
    assert row.base.mean == pytest.approx(82.0)


def test_cross_dataset_table(output):
    add_cross_dataset(output)
    summary = build_summary(output)
    cells = summary.xd["CoOp_ATP"]
    assert "CoOp" not in summary.xd
    assert cells["imagenet"].mean == pytest.approx(71.5)  # source: final test of the training runs
    assert cells["caltech101"].mean == pytest.approx(94.5) and cells["imagenetv2"].mean == pytest.approx(65.5)
    assert cells["xd_avg"].mean == pytest.approx((94.5 + 46.5) / 2) and cells["xd_avg"].flagged
    assert cells["dg_avg"].mean == pytest.approx((65.5 + 51.5) / 2)
    labels = [label for label, _ in summary.xd_columns]
    assert labels[:2] == ["ImageNet", "Caltech101"] and "XD Average" in labels and labels[-1] == "DG Average"
    # Cross-dataset evaluations on all classes never leak into the base-to-novel table.
    row = next(r for r in summary.b2n if (r.dataset, r.method) == ("caltech101", "CoOp_ATP"))
    assert row.novel.mean == pytest.approx(67.0)


# ------------------------------------------------------------------------------------------------ the CLIs


def test_markdown_output_marks_gaps_and_shows_paper(output, capsys):
    assert summarize.main([str(output), "--paper"]) == 0
    text = capsys.readouterr().out
    assert "| Average | CoOp | 76.50* | 52.00* |" in text
    assert f"| Caltech101 | CoOp | 82.00 | 62.00 | {hm(82, 62):.2f} | 1, 2, 3 |" in text
    assert f"| DTD | CoOp_ATP | 75.50* | 51.00 | {hm(75.5, 51):.2f}* |" in text
    assert "| AttributeWorld | CoOp_ATP | 90.00 | 70.00 |" in text
    assert "| CoOp_ATP |" in text and "74.65" in text and "82.68" in text
    assert "- WARNING: CoOp_ATP on DTD, base classes: missing seed(s) 3" in text


def test_csv_output_and_warnings_on_stderr(output, tmp_path, capsys):
    out = tmp_path / "tables" / "results.csv"
    assert summarize.main([str(output), "--format", "csv", "--out", str(out), "--methods", "CoOp_ATP,CoOp"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: CoOp_ATP on DTD, base classes: missing seed(s) 3" in err
    records = list(csv.DictReader(io.StringIO(out.read_text())))
    first = records[0]
    assert (first["section"], first["dataset"], first["method"]) == ("base2novel", "Average", "CoOp_ATP")
    row = next(r for r in records if (r["dataset"], r["method"]) == ("Caltech101", "CoOp"))
    assert float(row["base"]) == 82.0 and float(row["novel"]) == 62.0
    assert float(row["hm"]) == pytest.approx(hm(82, 62), abs=0.005)
    assert float(row["base_std"]) == pytest.approx(np.std([80, 82, 84]), abs=0.005)
    assert row["seeds"] == "1 2 3" and row["note"] == ""
    assert next(r for r in records if (r["dataset"], r["method"]) == ("DTD", "CoOp_ATP"))["note"] == "incomplete"


def test_errors_are_one_clear_line(output, tmp_path, capsys):
    assert summarize.main([str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert summarize.main([str(output), "--methods", "MaPLe"]) == 2
    assert "found: CoOp, CoOp_ATP" in capsys.readouterr().err


def test_plot_from_csv_and_from_root(output, tmp_path, capsys):
    csv_path = tmp_path / "results.csv"
    assert summarize.main([str(output), "--format", "csv", "--out", str(csv_path)]) == 0
    assert plot_summary.main([str(csv_path)]) == 0
    png = tmp_path / "results_hm.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    out = tmp_path / "novel.png"
    assert plot_summary.main([str(output), "--metric", "novel", "--out", str(out), "--methods", "CoOp"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_parse_test_res_matches_dassl_conventions(output, capsys):
    train_dir = output / "caltech101" / "CoOp" / "vit_b16_16shots" / "CTX_2_epo_100"
    assert parse_test_res.main([str(train_dir)]) == 0
    text = capsys.readouterr().out
    assert text.count("file: ") == 3
    assert f"* accuracy: 82.00% +- {np.std([80, 82, 84]):.2f}%" in text
    assert "* error: 18.00% +- " in text and "* macro_f1: 81.00% +- " in text
    assert parse_test_res.main([str(train_dir), "--ci95"]) == 0
    assert f"* accuracy: 82.00% +- {1.96 * np.std([80, 82, 84]) / np.sqrt(3):.2f}%" in capsys.readouterr().out

    eval_dir = output / "evaluation" / "CoOp" / "vit_b16_16shots" / "nctx2" / "caltech101"
    assert parse_test_res.main([str(eval_dir)]) == 2  # evaluation logs have no "Finish training"
    assert "--test-log" in capsys.readouterr().err
    assert parse_test_res.main([str(eval_dir), "--test-log"]) == 0
    assert "* accuracy: 62.00% +- " in capsys.readouterr().out

    multi = output / "evaluation" / "CoOp" / "vit_b16_16shots" / "nctx2"
    assert parse_test_res.main([str(multi), "--test-log", "--multi-exp"]) == 0
    tail = capsys.readouterr().out.split("Average performance")[1]
    assert "* accuracy: 52.00%" in tail  # mean of caltech101 (62) and dtd (42)


def test_tools_run_as_scripts(output):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "summarize.py"), str(output), "--format", "csv"],
                          capture_output=True, text=True, cwd=output.parent, check=True)
    assert done.stdout.startswith("section,dataset,method,")
