"""tools/sweep.py: the scripts' jobs of a whole table, on local workers, through submitit, and on a (fake) Slurm."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import fake_datasets

from tools import sweep

REPO = Path(__file__).resolve().parents[1]


def sweep_args(tmp_path, clip_path, *flags: str, datasets=("caltech101", "dtd"), seeds=("1", "2")) -> list[str]:
    return ["--protocol", "base2new", "--methods", "coop/atprompt", "--datasets", *datasets, "--seeds", *seeds,
            "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--epo", "1", "--shots", "1",
            "--no-feature-cache", *flags, "--opts", "MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8"]


def fake_data(tmp_path, *names: str) -> None:
    for name in names:
        getattr(fake_datasets, name)(tmp_path / "data")


def records(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in out.rglob("results.json")}


def table_row(text: str, dataset: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {dataset} | CoOp_ATP |"))
    return [cell.strip() for cell in line.split("|")[1:-1]]


def test_the_jobs_are_the_scripts_each_evaluation_after_its_training(tmp_path, capsys):
    assert sweep.main(sweep_args(tmp_path, "clip.pt", "--dry-run")) == 0
    lines = capsys.readouterr().out.splitlines()
    trainings = [line for line in lines if line.startswith("train ")]
    evaluations = [line for line in lines if line.startswith("eval ")]
    assert len(trainings) == len(evaluations) == 4 and lines.index(evaluations[0]) > lines.index(trainings[-1])
    folder = ("caltech101/CoOp_ATP/vit_b16_1shots/nctx2_cscFalse_ctpend/CTX_2_epo_1/"
              "backbone.name-clip.pt_input.size-32+32")
    assert trainings[0] == f"train {folder}/seed1"  # the scripts' folder: --opts (EXTRA_OPTS) add one level
    assert evaluations[0].endswith(f"(after {folder}/seed1)")


def test_unknown_methods_and_missing_datasets_are_one_line(capsys):
    assert sweep.main(["--protocol", "xd", "--methods", "dept/atprompt"]) == 2
    err = capsys.readouterr().err
    assert "--methods dept/atprompt: no xd scripts; with --protocol xd choose from cocoop/atprompt, " in err
    assert "coop/atprompt, " in err and err.count("\n") == 1
    assert sweep.main(["--protocol", "fewshot", "--methods", "coop/vanilla"]) == 2
    assert "--datasets: which datasets the fewshot jobs run on" in capsys.readouterr().err


def test_slurm_times_and_options_are_read_as_slurm_reads_them_or_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands
    assert [sweep.minutes(t) for t in ("90", "30:00", "30:01", "4:00:00", "0:00:10")] == [90, 30, 31, 240, 1]
    assert sweep.slurm_options(["account=proj", "qos=a=b"]) == {"account": "proj", "qos": "a=b"}
    for flags, message in ((["--time", "4h"], "--time 4h: give minutes, "),
                           (["--slurm-arg", "account"], "--slurm-arg account: give an sbatch option as KEY=VALUE"),
                           ([], "--slurm: this machine has no Slurm")):
        assert sweep.main(["--protocol", "base2new", "--methods", "coop/atprompt", "--datasets", "dtd", "--slurm",
                           *flags]) == 2
        assert message in capsys.readouterr().err


def test_the_eta_counts_hours_past_a_day():
    done, waiting = (sweep.Task(None, "", "", [], 0, state=state, seconds=25 * 3600.0) for state in ("done", "waiting"))
    assert sweep.Progress([done, waiting], slots=1).line().endswith("1 left, ETA 25:00:00")


def test_two_workers_stopped_midway_continue_where_they_were_and_end_with_the_table(tmp_path, tiny_vit_path):
    fake_data(tmp_path, "caltech101", "dtd")
    command = [sys.executable, str(REPO / "tools/sweep.py"), *sweep_args(tmp_path, tiny_vit_path, "--jobs", "2")]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    for line in first.stdout:  # once a job has finished, Ctrl+C as a terminal sends it: to the whole process group
        if line.startswith("[sweep] done"):
            os.killpg(first.pid, signal.SIGINT)
            break
    rest = first.communicate(timeout=300)[0]
    assert first.returncode == 130 and "Traceback" not in rest, rest
    finished = records(tmp_path / "out")
    assert 1 <= len(finished) < 8

    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = records(tmp_path / "out")
    assert len(after) == 8, second.stdout[-3000:]
    assert all(after[folder] == record for folder, record in finished.items())  # nothing ran twice
    assert f"{len(finished)} done ({len(finished)} already)" in second.stdout
    for dataset in ("Caltech101", "DTD"):
        row = table_row(second.stdout, dataset)
        assert row[-1] == "1, 2" and all(re.fullmatch(r"\d+\.\d\d", cell) for cell in row[2:5])


def test_the_same_sweep_through_submitit(tmp_path, tiny_vit_path, capsys):
    fake_data(tmp_path, "caltech101")
    args = sweep_args(tmp_path, tiny_vit_path, "--submitit", "debug", datasets=("caltech101",), seeds=("1",))
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert len(records(tmp_path / "out")) == 2 and table_row(out, "Caltech101")[-1] == "1"


FAKE_SBATCH = r'''#!{python}
"""sbatch: keep the script and start its array elements in the background, one after another."""
import os, re, subprocess, sys
script = open(sys.argv[1]).read()
state = os.environ["FAKE_SLURM"]
job = str(1000 + len([name for name in os.listdir(state) if name.endswith(".sh")]))
open(os.path.join(state, job + ".sh"), "w").write(script)
flags = dict(re.findall(r"#SBATCH --([\w-]+)=(\S+)", script))
elements = [(job, {{}}, flags["output"].replace("%j", job))]  # one job, or an array of them
if "array" in flags:
    first, last = map(int, flags["array"].split("%")[0].split("-"))
    elements = [(f"{{job}}_{{task}}", {{"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": str(task)}},
                 flags["output"].replace("%A", job).replace("%a", str(task))) for task in range(first, last + 1)]
runner = f"""
import os, subprocess
for name, array, out in {{elements!r}}:
    env = dict(os.environ, SLURM_JOB_ID=name, SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1", SLURM_NODEID="0",
               SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_JOB_NODELIST="node1", **array)
    with open(out, "a") as log:
        code = subprocess.run(["bash", {{sys.argv[1]!r}}], env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    open(os.path.join({{state!r}}, name + ".state"), "w").write("COMPLETED" if code == 0 else "FAILED")
"""
# Not holding sbatch's output open: submitit reads it to the end before it writes what the jobs load.
subprocess.Popen([sys.executable, "-c", runner], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"Submitted batch job {{job}}")
'''
FAKE_SACCT = r'''#!{python}
"""sacct: the states the fake sbatch wrote."""
import os, sys
state = os.environ["FAKE_SLURM"]
print("JobID|State|NodeList")
for name in sorted(os.listdir(state)):
    if name.endswith(".state"):
        print(f"{{name[:-6]}}|{{open(os.path.join(state, name)).read()}}|node1")
'''


def test_the_slurm_path_submits_arrays_of_the_resources_asked_and_reports_a_failed_element(tmp_path, tiny_vit_path,
                                                                                          monkeypatch, capsys):
    # No data at all: the training fails (what a failed element looks like), and its evaluation never runs.
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("squeue", "#!/bin/sh\n"),
                       ("scontrol", "#!/bin/sh\n"), ("srun", '#!/bin/sh\nexec "$@"\n')):
        (bin_dir / name).write_text(text.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    args = sweep_args(tmp_path, tiny_vit_path, "--slurm", "--partition", "gpu", "--time", "0:30:00",
                      "--gpus-per-job", "1", "--array-parallelism", "1", "--slurm-arg", "account=proj",
                      datasets=("caltech101",), seeds=("1", "2"))
    assert sweep.main(args) == 1
    out = capsys.readouterr().out

    (script,) = (path.read_text() for path in state.glob("*.sh"))  # one wave: the evaluations wait on the trainings
    for flag in ("--partition=gpu", "--time=30", "--gpus-per-node=1", "--array=0-1%1", "--account=proj",
                 "--cpus-per-task=8", "--mem=32GB"):
        assert f"#SBATCH {flag}\n" in script, flag
    for seed in (1, 2):
        assert (f"FAILED coop/atprompt train caltech101, seed {seed} (job 1000_{seed - 1}: train.py ended with exit "
                "status 2)") in out
    assert "error: " in out.split("FAILED", 1)[1] and "caltech-101" in out  # its end: train.py's one line
    assert "Not run, since the training they evaluate failed: coop/atprompt eval caltech101, seed 1" in out
