"""Every run knows what it is: its record (results.json), the fingerprint of its settings, and the decisions taken
from them (reuse by the scripts, resume, evaluation of a checkpoint, the result tables)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_data import make_caltech101, run_args
from tiny_clip import make_tiny_clip, save_state_dict

import train
from dassl.data import data_manager
from dassl.engine.records import fingerprint, read_record, setting_fingerprint, write_record
from tools import run_protocol
from tools.results import ResultsError
from tools.results import summarize as build_summary

OPTS = ["OPTIM.MAX_EPOCH", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TRAINER.COOP.N_CTX", "2",
        "TRAINER.COCOOP.N_CTX", "2", "TRAINER.ATPROMPT.N_ATT1", "2", "TRAINER.ATPROMPT.N_ATT2", "2"]
CONFIGS = {"CoOp": "CoOp/vit_b16.yaml", "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1.yaml"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech101(str(tmp_path_factory.mktemp("data")))


def args(data_root, out, clip, *opts, trainer="CoOp", extra=()):
    return run_args(data_root, out, trainer, clip, CONFIGS[trainer.removesuffix("_ATP")], *OPTS, *opts,
                    extra=extra)


def evaluate(data_root, out, clip, model_dir, *opts, trainer="CoOp"):
    return args(data_root, out, clip, "DATASET.SUBSAMPLE_CLASSES", "new", *opts, trainer=trainer,
                extra=["--eval-only", "--model-dir", str(model_dir)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root, tiny_vit_path):
    """Finished base-class runs: CoOp+ATPrompt, and CoCoOp; one CoOp with class-specific context."""
    runs = {}
    root = tmp_path_factory.mktemp("trained")
    for name, trainer, opts in [("coop", "CoOp_ATP", ()), ("cocoop", "CoCoOp", ()),
                                ("csc", "CoOp", ("TRAINER.COOP.CSC", "True"))]:
        runs[name] = root / name
        assert train.main(args(data_root, runs[name], tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base", *opts,
                               trainer=trainer)) == 0
    return runs


def test_a_training_and_an_evaluation_leave_their_records(tmp_path, data_root, tiny_vit_path, trained):
    record = read_record(str(trained["coop"]))
    assert record["status"] == "finished" and record["kind"] == "train" and record["trainer"] == "CoOp_ATP"
    assert (record["dataset"], record["seed"], record["shots"], record["subsample"]) == ("Caltech101", 1, 2, "base")
    assert record["backbone"]["name"] == str(tiny_vit_path) and len(record["backbone"]["sha256"]) == 64
    assert record["prompt"] == {"n_ctx": 2, "attributes": ["shape", "size"], "n_att": [2, 2]}
    assert record["epochs"] == 2 and set(record["metrics"]) == {"accuracy", "error_rate", "macro_f1"}
    assert record["settings"]["OPTIM.MAX_EPOCH"] == 2 and "OUTPUT_DIR" not in record["settings"]
    assert "DATALOADER.NUM_WORKERS" not in record["settings"]  # what does not decide the numbers is left out
    log = (trained["coop"] / "log.txt").read_text()
    assert f"* accuracy: {record['metrics']['accuracy']:.3f}%" in log  # the log keeps Dassl's format

    out = tmp_path / "eval"
    assert train.main(evaluate(data_root, out, tiny_vit_path, trained["coop"], trainer="CoOp_ATP")) == 0
    evaluation = read_record(str(out))
    assert evaluation["kind"] == "eval" and evaluation["subsample"] == "new"
    source = evaluation["source"]
    assert source["setting"] == record["setting"] and source["fingerprint"] == record["fingerprint"]
    assert source["epoch"] == 2 and list(source["files"]) == ["prompt_learner/model.pth.tar-2"]


@pytest.mark.parametrize(("seed", "opts", "differs"), [
    ("2", (), "SEED: 1 -> 2"),
    ("1", ("DATASET.SUBSAMPLE_CLASSES", "all"), "DATASET.SUBSAMPLE_CLASSES: 'base' -> 'all'"),
    ("1", ("OPTIM.NAME", "adam"), "OPTIM.NAME: 'sgd' -> 'adam'"),
])  # fmt: skip
def test_resume_refuses_other_settings(tmp_path, data_root, tiny_vit_path, trained, capsys, seed, opts, differs):
    run = tmp_path / "run"
    shutil.copytree(trained["coop"], run)
    before = sorted(p.name for p in run.rglob("*"))
    argv = args(data_root, run, tiny_vit_path, "DATASET.SUBSAMPLE_CLASSES", "base", *opts, trainer="CoOp_ATP")
    argv[argv.index("--seed") + 1] = seed
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot resume from") and differs in err
    assert sorted(p.name for p in run.rglob("*")) == before


@pytest.mark.parametrize(("case", "message"), [
    ("cocoop-as-coop", "was trained by CoCoOp, not CoOp"),
    ("class-position", "class_position: checkpoint 'end', model 'front'"),
    ("csc-on-new-classes", "class-specific context (CSC) only fits the classes it was learned for"),
    ("another-clip", "weights sha256"),
])  # fmt: skip
def test_evaluation_refuses_a_checkpoint_of_another_set_up(tmp_path, data_root, tiny_vit_path, trained, capsys,
                                                           case, message):
    clip = tiny_vit_path
    if case == "cocoop-as-coop":
        model, opts = trained["cocoop"], ()
    elif case == "class-position":
        model, opts = trained["coop"], ("TRAINER.COOP.CLASS_TOKEN_POSITION", "front")
    elif case == "csc-on-new-classes":
        model, opts = trained["csc"], ("TRAINER.COOP.CSC", "True")
    else:
        model, opts, clip = trained["coop"], (), tmp_path / "other_clip.pt"
        save_state_dict(make_tiny_clip("vit", seed=5), clip)  # the same sizes, other weights
    trainer = "CoOp_ATP" if model == trained["coop"] else "CoOp"
    assert train.main(evaluate(data_root, tmp_path / "eval", clip, model, *opts, trainer=trainer)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "eval").exists()


# -- the run scripts ----------------------------------------------------------------------------------------------
def script(monkeypatch, capsys, name: str, *script_args: str, **env: str) -> tuple[int, str, str]:
    for key in ("EPO", "NCTX", "WEIGHT", "CFG", "SHOTS", "EXTRA_OPTS", "FORCE", "DRY_RUN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = run_protocol.main([str(REPO / "scripts" / name), *script_args])
    out, err = capsys.readouterr()
    return code, out, err


def test_scripts_reuse_a_finished_run_only_with_its_fingerprint(tmp_path, monkeypatch, capsys):
    env = dict(OUTPUT=str(tmp_path / "out"), CFG="world_tiny", EPO="1", SHOTS="1", PYTHON=sys.executable)
    monkeypatch.chdir(REPO)
    command = ("coop/vanilla_base2new_train.sh", "attribute_world", str(tmp_path / "data"), "1")
    assert script(monkeypatch, capsys, *command, **env)[0] == 0
    folder = next((tmp_path / "out").rglob("results.json")).parent
    code, out, _ = script(monkeypatch, capsys, *command, **env)
    assert code == 0 and f"Results are available in {folder}. Skip this job" in out

    # As if the config file had been edited since: the same folder, other settings.
    record = json.loads((folder / "results.json").read_text())
    record["settings"]["OPTIM.LR"] = 0.5
    record["fingerprint"] = fingerprint("train", record["settings"])
    (folder / "results.json").write_text(json.dumps(record))
    code, _, err = script(monkeypatch, capsys, *command, **env)
    assert code == 2 and f"{folder} holds a finished run of other settings (OPTIM.LR: 0.5 -> 0.02)" in err
    assert "another OUTPUT, or move that folder away" in err and "FORCE=1" not in err  # it would only resume


def test_scripts_never_reuse_a_run_of_weights_since_replaced(tmp_path, monkeypatch, capsys):
    """A local backbone file is part of the fingerprint by its content: the same path, other weights."""
    weights = tmp_path / "clip.pt"
    shutil.copy(REPO / "clip/weights/tiny_clip_attribute_world.pt", weights)
    env = dict(OUTPUT=str(tmp_path / "out"), CFG="world_tiny", EPO="1", SHOTS="1", PYTHON=sys.executable,
               EXTRA_OPTS=f"MODEL.BACKBONE.NAME {weights}")
    monkeypatch.chdir(REPO)
    command = ("coop/vanilla_base2new_train.sh", "attribute_world", str(tmp_path / "data"), "1")
    assert script(monkeypatch, capsys, *command, **env)[0] == 0
    state = torch.load(weights, weights_only=True)
    state["ln_final.bias"] = state["ln_final.bias"] + 0.01
    torch.save(state, weights)
    code, _, err = script(monkeypatch, capsys, *command, **env)
    assert code == 2 and f"holds a finished run of other settings (the content of {weights})" in err


@pytest.mark.parametrize(("first", "second"), [
    ({"EPO": "2"}, {"EPO": "4"}),  # the evaluated epoch
    ({"EXTRA_OPTS": "TRAINER.ATPROMPT.ATTRIBUTES \"['shape', 'material']\""}, {}),  # the attributes
    ({"EXTRA_OPTS": "MODEL.BACKBONE.NAME ViT-L/14"}, {}),  # the backbone
])  # fmt: skip
def test_what_a_user_varies_names_its_own_folder(monkeypatch, capsys, first, second):
    def folders(env):
        code, out, _ = script(monkeypatch, capsys, "coop/atprompt_base2new_test.sh", "caltech101", "d", "1",
                              DRY_RUN="1", **env)
        return [line.split("--output-dir ")[1].split()[0] for line in out.splitlines()]

    assert folders(first) != folders(second)


def test_a_search_of_other_bases_has_its_own_folder(monkeypatch, capsys):
    def folder(*bases):
        _, out, _ = script(monkeypatch, capsys, "attribute_search/main.sh", "caltech101", "d", *bases, DRY_RUN="1")
        return out.split("--output-dir ")[1].split()[0]

    assert folder() != folder("shape color size") and "bases-shape+color+size" in folder("shape color size")


# -- the result tables ----------------------------------------------------------------------------------------
def record(folder: Path, kind: str, trainer: str, seed: int, accuracy: float, subsample: str, **settings) -> dict:
    """A finished run's record as train.py writes it (the fields the tables read)."""
    full = {"SEED": seed, "OPTIM.MAX_EPOCH": 2, "DATASET.NAME": "Caltech101", **settings}
    identity = {"kind": kind, "settings": full, "model": {}}
    content = {"status": "finished", "kind": kind, "trainer": trainer, "dataset": "Caltech101", "seed": seed,
               "subsample": subsample, "metrics": {"accuracy": accuracy}, "settings": full,
               "fingerprint": fingerprint(kind, full), "setting": setting_fingerprint(identity)}
    write_record(str(folder), content)
    return content


def test_tables_read_records_anywhere_and_pair_evaluations_with_their_training(tmp_path):
    root = tmp_path / "output" / "demo"  # a root one level above the layout (scripts/demo.sh writes output/demo)
    for seed in (1, 2):
        trained = record(root / f"anywhere/train/seed{seed}", "train", "CoOp", seed, 80.0 + seed, "base")
        evaluation = record(root / f"elsewhere/eval/{seed}", "eval", "CoOp", seed, 60.0 + seed, "new",
                            **{"MODEL.X": 1})
        evaluation["source"] = {"setting": trained["setting"], "epoch": 2, "epochs": 2}
        write_record(str(root / f"elsewhere/eval/{seed}"), evaluation)
    summary = build_summary(tmp_path / "output")
    (row,) = summary.b2n
    assert (row.method, row.dataset, row.base.mean, row.novel.mean, row.base.seeds) == ("CoOp", "caltech101", 81.5,
                                                                                        61.5, (1, 2))


def test_tables_never_average_two_settings_and_say_what_differs(tmp_path):
    record(tmp_path / "a/seed1", "train", "CoOp", 1, 80.0, "base")
    record(tmp_path / "b/seed2", "train", "CoOp", 2, 70.0, "base", **{"OPTIM.MAX_EPOCH": 4})
    with pytest.raises(ResultsError, match=r"several settings of CoOp on Caltech101, base classes \(train runs\): "
                                           r"OPTIM.MAX_EPOCH: 2 -> 4"):
        build_summary(tmp_path)


def test_novel_classes_of_another_training_setting_are_not_paired(tmp_path):
    record(tmp_path / "a/seed1", "train", "CoOp", 1, 80.0, "base")
    other = record(tmp_path / "b/seed1", "train", "CoOp", 1, 70.0, "base", **{"OPTIM.MAX_EPOCH": 4})
    evaluation = record(tmp_path / "c/seed1", "eval", "CoOp", 1, 60.0, "new")
    write_record(str(tmp_path / "c/seed1"), {**evaluation, "source": {"setting": other["setting"]}})
    shutil.rmtree(tmp_path / "b")  # only the evaluation of the 4-epoch run is left
    with pytest.raises(ResultsError, match="evaluate training runs of another setting than its base-class runs"):
        build_summary(tmp_path)


def test_cross_dataset_evaluations_of_models_of_two_training_settings_are_refused(tmp_path):
    for seed, epochs in ((1, 2), (2, 4)):  # the source models themselves are elsewhere (or gone)
        identity = {"kind": "train", "settings": {"SEED": seed, "OPTIM.MAX_EPOCH": epochs}}
        evaluation = record(tmp_path / f"xd/seed{seed}", "eval", "CoOp", seed, 60.0, "all")
        write_record(str(tmp_path / f"xd/seed{seed}"), {**evaluation, "source": {"setting": setting_fingerprint(
            identity)}})
    with pytest.raises(ResultsError, match="the cross-dataset evaluations of CoOp evaluate models of 2 training "
                                           "settings"):
        build_summary(tmp_path)


def test_an_evaluation_of_an_earlier_epoch_is_pointed_out(tmp_path):
    trained = record(tmp_path / "a/seed1", "train", "CoOp", 1, 80.0, "base")
    evaluation = record(tmp_path / "c/seed1", "eval", "CoOp", 1, 60.0, "new")
    write_record(str(tmp_path / "c/seed1"), {**evaluation, "source": {"setting": trained["setting"], "epoch": 1,
                                                                      "epochs": 2}})
    summary = build_summary(tmp_path)
    assert any("evaluates epoch 1 of a 2-epoch training run" in w for w in summary.warnings)


def test_summarize_after_the_demo_reads_output(tmp_path):
    """The README's command after scripts/demo.sh (which writes output/demo) is summarize.py output."""
    record(tmp_path / "output/demo/x/seed1", "train", "CoOp", 1, 80.0, "base")
    done = subprocess.run([sys.executable, "tools/summarize.py", str(tmp_path / "output")], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| Caltech101 | CoOp | 80.00 |" in done.stdout


def test_loader_workers_are_capped_at_the_cpus_with_a_note(capsys, monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    data_manager.usable_workers.cache_clear()
    assert data_manager.usable_workers(cpus + 6) == cpus
    assert data_manager.usable_workers(cpus + 6) == cpus
    out = capsys.readouterr().out
    assert out.count(f"DATALOADER.NUM_WORKERS is {cpus + 6} but this machine has {cpus} CPU(s)") == 1
    assert data_manager.usable_workers(1) == 1


def test_the_checkpoint_of_a_record_is_the_one_evaluated(tmp_path, data_root, tiny_vit_path, trained):
    """An evaluation's fingerprint covers the checkpoint's content: retraining into the model folder changes it."""
    model = tmp_path / "model"
    shutil.copytree(trained["coop"], model)
    argv = evaluate(data_root, tmp_path / "eval", tiny_vit_path, model, trainer="CoOp_ATP")
    assert train.main(argv) == 0
    first = read_record(str(tmp_path / "eval"))["fingerprint"]
    checkpoint = model / "prompt_learner" / "model.pth.tar-2"
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["ctx"] += 1
    torch.save(state, checkpoint)
    planned = train.run_identity(train.build_parser().parse_args(argv), train.setup_cfg(
        train.build_parser().parse_args(argv)))
    assert planned["fingerprint"] != first and planned["settings"] == read_record(str(tmp_path / "eval"))["settings"]


def test_parse_test_res_reads_records_and_refuses_seeds_of_other_settings(tmp_path, capsys):
    from tools import parse_test_res

    record(tmp_path / "exp/seed1", "train", "CoOp", 1, 80.0, "base")
    record(tmp_path / "exp/seed2", "train", "CoOp", 2, 84.0, "base")
    assert parse_test_res.main([str(tmp_path / "exp")]) == 0
    assert "* accuracy: 82.00% +- 2.00%" in capsys.readouterr().out
    record(tmp_path / "exp/seed3", "train", "CoOp", 3, 70.0, "base", **{"TRAINER.COOP.N_CTX": 4})
    assert parse_test_res.main([str(tmp_path / "exp")]) == 2
    assert "different settings (TRAINER.COOP.N_CTX: <unset> -> 4)" in capsys.readouterr().err
