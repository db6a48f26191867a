"""The all-class few-shot protocol end to end: the scripts' runs and folders, the table and the learning curves."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tools import plot_summary, run_protocol, summarize

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fewshot_runs(tmp_path_factory):
    """CoOp's few-shot script on the demo's world with the tiny CLIP: shots 1 and 2, seeds 1 and 2, one epoch."""
    out = tmp_path_factory.mktemp("fewshot")
    env = {"OUTPUT": str(out / "out"), "CFG": "world_tiny", "EPO": "1", "SHOTS": "1 2", "PYTHON": sys.executable,
           "FEATURE_CACHE": "0"}
    with pytest.MonkeyPatch.context() as patch:
        for key in ("NCTX", "WEIGHT", "EXTRA_OPTS", "FORCE", "DRY_RUN", "DATA"):
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        patch.chdir(REPO)
        code = run_protocol.main([str(REPO / "scripts/coop/vanilla_fewshot_train.sh"), "attribute_world",
                                  str(out / "data"), "1", "2"])
    assert code == 0
    return out / "out"


def final_accuracy(log: Path) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", log.read_text())[-1])


def test_each_shot_count_and_seed_trains_on_all_classes_in_its_own_folder(fewshot_runs):
    folders = sorted(p.parent.relative_to(fewshot_runs) for p in fewshot_runs.rglob("log.txt"))
    assert [str(f) for f in folders] == [
        f"fewshot/attribute_world/CoOp/world_tiny_{k}shots/nctx16_cscFalse_ctpend/CTX_16_epo_1/seed{s}"
        for k in (1, 2) for s in (1, 2)]
    for folder in folders:
        log = (fewshot_runs / folder / "log.txt").read_text()
        shots = re.search(r"_(\d)shots", str(folder)).group(1)
        assert "SUBSAMPLE_CLASSES: all" in log and f"NUM_SHOTS: {shots}" in log


def test_the_table_gives_the_logs_accuracies_over_seeds(fewshot_runs, capsys):
    assert summarize.main([str(fewshot_runs)]) == 0
    out = capsys.readouterr().out
    assert "## Few-shot classification (all classes)" in out and "Base-to-novel" not in out
    row = next(line for line in out.splitlines() if line.startswith("| AttributeWorld | CoOp |"))
    cells = [cell.strip() for cell in row.split("|")[3:5]]
    for shots, cell in zip((1, 2), cells):
        accuracies = [final_accuracy(p) for p in sorted(fewshot_runs.glob(f"fewshot/**/*_{shots}shots/**/log.txt"))]
        assert len(accuracies) == 2
        assert cell == f"{np.mean(accuracies):.2f} ± {np.std(accuracies):.2f}"


def test_the_learning_curves_are_drawn_as_png_and_pdf(fewshot_runs, capsys):
    csv = fewshot_runs.parent / "results.csv"
    assert summarize.main([str(fewshot_runs), "--format", "csv", "--out", str(csv)]) == 0
    assert plot_summary.main([str(csv)]) == 0
    for suffix in (".png", ".pdf"):
        path = csv.with_name("results_fewshot" + suffix)
        assert path.is_file() and path.stat().st_size > 1000
    assert "no base-to-novel" not in capsys.readouterr().err
    # With --out the curves go beside the bars, never over them: <name>_fewshot, in the format asked for.
    assert plot_summary.main([str(csv), "--out", str(csv.with_name("figure.png"))]) == 0
    assert [p.name for p in csv.parent.glob("figure*")] == ["figure_fewshot.png"]
