"""tools/benchmark.py: a smoke run on the tiny CLIP (one timed step per path)."""

import math
import re

import pytest

from tools import benchmark

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
