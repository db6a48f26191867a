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
from fake_data import image_folder, run_args
from tiny_clip import make_tiny_clip, save_state_dict

import train
from dassl.data import data_manager
from dassl.engine.records import RECORD_FILE, fingerprint, read_record, setting_fingerprint, write_record
from dassl.utils.errors import UserError
from tools import run_protocol
from tools.results import ResultsError
from tools.results import summarize as build_summary
from trainers import run_spec

OPTS = ["OPTIM.MAX_EPOCH", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TRAINER.COOP.N_CTX", "2",
        "TRAINER.COCOOP.N_CTX", "2", "TRAINER.ATPROMPT.N_ATT1", "2", "TRAINER.ATPROMPT.N_ATT2", "2"]
CONFIGS = {"CoOp": "CoOp/vit_b16.yaml", "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1.yaml"}
REPO = Path(__file__).resolve().parents[1]


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
    ("cocoop-as-coop", "TRAINER.NAME is 'CoOp' (on the command line) but 'CoCoOp' in training"),
    ("class-position", "TRAINER.COOP.CLASS_TOKEN_POSITION is 'front' (on the command line) but 'end' in training"),
    ("csc-on-new-classes", "class-specific context (CSC) only fits the classes it was learned for"),
    ("another-clip", "MODEL.BACKBONE.NAME is "),
    ("clip-replaced", "weights sha256"),
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
    elif case == "another-clip":
        model, opts, clip = trained["coop"], (), tmp_path / "other_clip.pt"
        save_state_dict(make_tiny_clip("vit", seed=5), clip)  # the same sizes, other weights
    else:  # the file the model was trained on, replaced since by other weights of the same sizes
        model, opts, clip = tmp_path / "model", (), tmp_path / "clip.pt"
        shutil.copy(tiny_vit_path, clip)
        assert train.main(args(data_root, model, clip, "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
        save_state_dict(make_tiny_clip("vit", seed=5), clip)
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
def record(folder: Path, kind: str, trainer: str, seed: int, accuracy: float, subsample: str, data: dict | None = None,
           **settings) -> dict:
    """A finished run's record as train.py writes it (the fields the tables read)."""
    full = {"SEED": seed, "OPTIM.MAX_EPOCH": 2, "DATASET.NAME": "Caltech101", **settings}
    identity = {"kind": kind, "settings": full, "model": {}, "data": data}
    content = {"status": "finished", "kind": kind, "trainer": trainer, "dataset": "Caltech101", "seed": seed,
               "subsample": subsample, "metrics": {"accuracy": accuracy}, "settings": full, "data": data,
               "fingerprint": fingerprint(kind, full, data=data), "setting": setting_fingerprint(identity)}
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
    planned = run_spec.run_identity(run_spec.build_parser().parse_args(argv), run_spec.setup_cfg(
        run_spec.build_parser().parse_args(argv)))
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


# -- records that cannot be read or lack what a decision needs ------------------------------------------------
def _damage(folder: Path, damage: str) -> None:
    path = folder / RECORD_FILE
    content = json.loads(path.read_text())
    if damage == "not JSON":
        path.write_text(path.read_text()[:40])
        return
    if damage == "accuracy a string":
        content["metrics"]["accuracy"] = "abc"
    elif damage == "accuracy null":
        content["metrics"]["accuracy"] = None
    elif damage == "no metrics":
        del content["metrics"]
    elif damage == "no fingerprint":
        del content["fingerprint"]
    path.write_text(json.dumps(content))


@pytest.mark.parametrize(("damage", "message"), [
    ("not JSON", "seed2/results.json is not valid JSON"),
    ("accuracy a string", "seed2/results.json has 'abc' as its accuracy, not a number"),
    ("accuracy null", "seed2/results.json has None as its accuracy, not a number"),
    ("no metrics", "seed2/results.json lacks its metrics"),
    ("no fingerprint", "seed2/results.json lacks its fingerprint"),
])  # fmt: skip
def test_summarize_names_a_record_it_cannot_use_and_keeps_the_others(tmp_path, damage, message):
    record(tmp_path / "exp/seed1", "train", "CoOp", 1, 80.0, "base")
    record(tmp_path / "exp/seed2", "train", "CoOp", 2, 70.0, "base")
    _damage(tmp_path / "exp/seed2", damage)
    summary = build_summary(tmp_path, expect_seeds=[1, 2])
    (row,) = summary.b2n
    assert row.base.mean == 80.0 and row.base.seeds == (1,) and row.base.flagged
    assert any(note.startswith(f"exp/{message}") and "left out of the tables" in note for note in summary.notes)


def test_parse_test_res_names_a_record_it_cannot_use(tmp_path, capsys):
    from tools import parse_test_res

    record(tmp_path / "exp/seed1", "train", "CoOp", 1, 80.0, "base")
    _damage(tmp_path / "exp/seed1", "accuracy a string")
    assert parse_test_res.main([str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'exp/seed1/results.json'} has 'abc' as its accuracy, not a number")


def test_runs_without_a_fixed_seed_are_left_out_of_the_tables(tmp_path):
    record(tmp_path / "exp/seed1", "train", "CoOp", 1, 80.0, "base")
    record(tmp_path / "exp/unseeded", "train", "CoOp", -1, 10.0, "base")
    summary = build_summary(tmp_path)
    assert summary.b2n[0].base.mean == 80.0
    assert "exp/unseeded: ran without a fixed seed (SEED -1), so its numbers cannot be repeated; left out of the " \
           "tables" in summary.notes


def test_tables_never_average_runs_on_other_data(tmp_path):
    for seed, split in ((1, "a" * 64), (2, "b" * 64)):
        record(tmp_path / f"exp/seed{seed}", "train", "CoOp", seed, 80.0, "base",
               data={"split": {"images/split_zhou_ImageFolder.json": split}, "shots": {}})
    with pytest.raises(ResultsError, match=r"several settings of CoOp on Caltech101, base classes \(train runs\): "
                                           r"data images/split_zhou_ImageFolder.json: 'a{12}' -> 'b{12}'"):
        build_summary(tmp_path)


@pytest.fixture(scope="module")
def finished_script_run(tmp_path_factory) -> Path:
    """A folder with a finished training job of the scripts on a local copy of the tiny CLIP, all named relative to
    it (run from there), so that a copy of it holds the same job."""
    root = tmp_path_factory.mktemp("scripted")
    shutil.copy(REPO / "clip/weights/tiny_clip_attribute_world.pt", root / "clip.pt")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for key, value in SCRIPTED_ENV.items():
            patch.setenv(key, value)
        assert run_protocol.main([str(REPO / "scripts" / SCRIPTED[0]), *SCRIPTED[1:]]) == 0
    return root


SCRIPTED = ("coop/vanilla_base2new_train.sh", "attribute_world", "data", "1")
SCRIPTED_ENV = dict(OUTPUT="out", CFG="world_tiny", EPO="1", SHOTS="1", PYTHON=sys.executable, FEATURE_CACHE="0",
                    EXTRA_OPTS="MODEL.BACKBONE.NAME clip.pt")


def scripted_copy(tmp_path: Path, monkeypatch, finished_script_run: Path) -> Path:
    """A copy of the finished job's folder, made the working folder; returns the folder of its run."""
    root = tmp_path / "copy"
    shutil.copytree(finished_script_run, root)
    monkeypatch.chdir(root)
    return next((root / "out").rglob(RECORD_FILE)).parent.relative_to(root)


@pytest.mark.parametrize("damage", ["not JSON", "no fingerprint", "no metrics"])
def test_scripts_never_take_an_unusable_record_for_a_finished_run(tmp_path, monkeypatch, capfd, finished_script_run,
                                                                  damage):
    """The job runs again and train.py decides: it reuses the finished run (testing it again) when the settings,
    backbone and data are its own, and writes a whole record."""
    folder = scripted_copy(tmp_path, monkeypatch, finished_script_run)
    _damage(folder, damage)
    code, out, err = script(monkeypatch, capfd, *SCRIPTED, **SCRIPTED_ENV)
    assert code == 0, err
    assert f"Note: {folder / RECORD_FILE} " in out and "Skip this job" not in out
    assert "it is reused without training, only the final model is tested again" in out
    assert read_record(str(folder))["metrics"]["accuracy"] >= 0
    assert "Skip this job" in script(monkeypatch, capfd, *SCRIPTED, **SCRIPTED_ENV)[1]


def test_scripts_rerun_a_damaged_record_and_train_py_refuses_weights_since_replaced(tmp_path, monkeypatch, capfd,
                                                                                  finished_script_run):
    folder = scripted_copy(tmp_path, monkeypatch, finished_script_run)
    _damage(folder, "not JSON")
    state = torch.load("clip.pt", weights_only=True)
    state["ln_final.bias"] = state["ln_final.bias"] + 0.01
    torch.save(state, "clip.pt")
    code, out, err = script(monkeypatch, capfd, *SCRIPTED, **SCRIPTED_ENV)
    assert code == 2 and "Skip this job" not in out
    assert "is not valid JSON" in out and "error: Cannot resume from" in err and "the backbone's weights" in err


def test_an_evaluation_folder_with_an_unusable_record_is_refused(tmp_path):
    folder = tmp_path / "eval"
    record(folder, "eval", "CoOp", 1, 60.0, "new")
    _damage(folder, "no fingerprint")
    with pytest.raises(UserError, match="results.json lacks its fingerprint, so what was evaluated there is "
                                        "unknown: set FORCE=1 to evaluate there again"):
        run_protocol.already_done(run_protocol.Job("eval", str(folder), []), str(folder), [])


# -- the data a run read ----------------------------------------------------------------------------------------
def test_a_finished_run_is_never_reused_on_other_data(tmp_path, tiny_vit_path, capsys):
    """The folder's classes replaced, and its split file deleted (as the error for changed class folders says): the
    same command is refused instead of testing the 3-class model on the 4 new classes."""
    data = image_folder(tmp_path / "images", ["cat", "dog", "fox"])
    out = tmp_path / "run"
    argv = run_args(data, out, "CoOp", tiny_vit_path, "CoOp/vit_b16.yaml", *OPTS,
                    extra=["--dataset-config-file", str(REPO / "configs/datasets/image_folder.yaml")])
    assert train.main(argv) == 0
    assert sorted(read_record(str(out))["data"]["split"]) == ["files in DATASET.ROOT", "split_zhou_ImageFolder.json"]
    shutil.rmtree(data)
    image_folder(data, ["ant", "bee", "cow", "eel"], seed=1)
    capsys.readouterr()
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot resume from") and "the data: split_zhou_ImageFolder.json changed" in err


def test_scripts_never_give_runs_on_other_data_one_folder(tmp_path, monkeypatch, capfd):
    env = dict(OUTPUT=str(tmp_path / "out"), CFG="world_tiny", EPO="1", SHOTS="1", PYTHON=sys.executable,
               EXTRA_OPTS="INPUT.SIZE (32,32)")
    first = image_folder(tmp_path / "a", ["cat", "dog", "fox"])
    # Other images of the same classes, in a folder of the same name: the same output folders.
    second = image_folder(tmp_path / "elsewhere" / "a", ["cat", "dog", "fox"], seed=1)
    monkeypatch.chdir(REPO)
    command = ("coop/vanilla_base2new_train.sh", "image_folder")
    assert script(monkeypatch, capfd, *command, str(first), "1", **env)[0] == 0

    # A few-shot cache deleted (it is drawn again from the seed): the job runs, and train.py reuses the run.
    shutil.rmtree(first / "split_fewshot")
    code, out, _ = script(monkeypatch, capfd, *command, str(first), "1", **env)
    assert code == 0 and "the data: split_fewshot/shot_1-seed_1.json is not there now: running the job" in out
    code, out, _ = script(monkeypatch, capfd, *command, str(first), "1", **env)
    assert code == 0 and "Skip this job" in out

    code, out, err = script(monkeypatch, capfd, *command, str(second), "1", **env)
    assert code == 2 and "Skip this job" not in out
    assert "holds a finished run of other settings (the data: files in DATASET.ROOT changed; " in err

    # A folder of another name has output folders (and table rows) of its own.
    third = image_folder(tmp_path / "b", ["cat", "dog", "fox"], seed=1)
    code, out, _ = script(monkeypatch, capfd, *command, str(third), "1", **env)
    assert code == 0 and "Skip this job" not in out
    assert (tmp_path / "out" / "b" / "CoOp").is_dir() and (tmp_path / "out" / "a" / "CoOp").is_dir()
