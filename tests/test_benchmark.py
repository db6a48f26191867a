"""tools/benchmark.py: a smoke run on the tiny CLIP (one timed step per path)."""

import json
import math
import re

import pytest

from tools import benchmark, benchmark_gpu

SMOKE = ["--arch", "tiny", "--classes", "6", "--batch", "2", "--eval-batches", "2", "--warmup", "1", "--iters", "1"]


def test_smoke_run_prints_ratios_and_matching_logits(capsys):
    rows = benchmark.main(SMOKE)
    out = capsys.readouterr().out
    names = [case.name for case in benchmark.cases()]
    assert [row.case.name for row in rows] == names

    table = out[out.index("case ") :].splitlines()
    assert table[0].split()[:5] == ["case", "classes", "fast", "img/s", "plain"]
    for name, line in zip(names, table[2:]):
        cells = line.split()
        assert cells[0] == name and cells[1] == "6"
        assert re.fullmatch(r"\d+\.\d\dx", cells[4]), line  # the speed-up ratio
    for row in rows:
        assert not row.fast.error and not row.plain.error
        assert math.isfinite(row.ratio) and row.ratio > 0
        if row.case.compare:
            assert row.max_diff < 1e-4, row.case.name  # fp32: only rounding differs
        else:
            assert math.isnan(row.max_diff)  # different candidate sets: nothing to compare
    assert "Peak memory is measured on GPUs only" in out


def test_selected_cases_and_bad_names(capsys):
    rows = benchmark.main([*SMOKE, "--cases", "coop-eval"])
    assert [row.case.name for row in rows] == ["coop-eval"]
    with pytest.raises(SystemExit):
        benchmark.main([*SMOKE, "--cases", "coop-evaluation"])
    assert "unknown case(s) coop-evaluation" in capsys.readouterr().err


def test_gpu_benchmark_prints_one_json_line_per_case_and_setting(capsys):
    """tools/benchmark_gpu.py, run here on the CPU with the tiny CLIP: its GPU defaults are only other sizes."""
    records = benchmark_gpu.main(["--arch", "tiny", "--device", "cpu", "--precs", "fp32", "bf16", "--classes", "4", "6",
                                  "--batch", "2", "--eval-batches", "1", "--warmup", "1", "--iters", "1"])
    out = capsys.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == records  # stdout: the JSON lines alone
    assert [(r["prec"], r["classes"], r["case"]) for r in records] == [
        (prec, n, case) for prec in ("fp32", "bf16") for n in (4, 6) for case in ("coop-train", "coop-eval")]
    for r in records:
        assert r["fast_img_per_s"] > 0 and r["plain_img_per_s"] > 0 and r["ratio"] > 0
        assert r["fast_peak_gib"] is None and r["device"] == "cpu"  # peak memory is a GPU figure
        assert r["max_abs_dlogit"] < (1e-4 if r["prec"] == "fp32" else 0.5)
    defaults = benchmark_gpu.parse_args([])
    assert (defaults.arch, defaults.device, defaults.precs, defaults.classes) == ("ViT-B/16", "cuda", ["fp16", "bf16"],
                                                                                 [50, 500])
