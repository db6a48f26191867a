"""scripts/demo.sh, the README's main command, end to end (one seed, one epoch, few shots)."""

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_prints_the_base_to_novel_table(tmp_path):
    # As a user runs it: SEARCH unset (SEARCH=1 adds the attribute search, whose script other tests run).
    env = dict(os.environ, DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"), EPO="1", SHOTS="2",
               FEATURE_CACHE="1", EXTRA_OPTS=f"FEATURE_CACHE.DIR {tmp_path / 'features'}")
    env.pop("SEARCH", None)
    done = subprocess.run(["bash", "scripts/demo.sh", "1"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # One line per step: which one, out of how many, the seeds it ran, its time and the time so far.
    progress = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress] == [f"[{k}/9" for k in range(1, 10)]
    assert progress[0].startswith("[1/9] zero-shot CLIP, base and novel classes (the world is generated first): ")
    assert all(re.search(r": seed 1 \(\d+ s; \d+ s in all\)$", line) for line in progress), progress
    rows = [line for line in done.stdout.splitlines() if line.startswith("| AttributeWorld |")]
    assert [row.split("|")[2].strip() for row in rows] == ["ZeroshotCLIP", "AnchorPretrain", "CoOp", "CoOp_ATP",
                                                          "CoOp_AnchorOPT"]
    for row in rows:
        base, novel, hm = (float(cell) for cell in row.split("|")[3:6])
        assert 3 * 100 / 16 < min(base, novel) <= 100 and min(base, novel) <= hm <= max(base, novel)
    # Later evaluations read the test images' features from the cache the first ones filled.
    logs = "".join(p.read_text() for p in (tmp_path / "out").rglob("log.txt"))
    assert re.search(r"Feature cache: [1-9]\d* of \d+ test image features from the cache", logs)
