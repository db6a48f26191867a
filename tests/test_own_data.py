"""Your own images through the run scripts (image_folder): ATPrompt's attributes and AnchorOPT's descriptions asked for
before anything loads, with the commands that give them; folders named after the image folder and never after a
file's path; and evaluation scripts that find their training run without EXTRA_OPTS repeated."""

import json
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_data import image_folder

import gpt_query
import train
from dassl.engine.records import read_record
from tools import run_protocol
from trainers import run_spec

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "fox", "owl"]  # base: cat, dog; new: fox, owl
ATTRIBUTES = "TRAINER.ATPROMPT.ATTRIBUTES \"['color', 'shape']\""
RUN = "my_photos/CoOp_ATP/world_tiny_2shots/nctx2_cscFalse_ctpend/CTX_2_epo_1"
EVAL = "evaluation/CoOp_ATP/world_tiny_2shots/nctx2_cscFalse_ctp_end/my_photos"


@pytest.fixture
def script(monkeypatch, capsys, tmp_path):
    """`bash scripts/<name> ARGS` with the tiny CLIP of configs/trainers/CoOp/world_tiny.yaml, train.py run in this
    process: returns (exit status, stdout, stderr)."""
    monkeypatch.chdir(REPO)
    in_process = SimpleNamespace(run=lambda command: subprocess.CompletedProcess(command, train.main(command[2:])))
    monkeypatch.setattr(run_protocol, "subprocess", in_process)

    def run(name: str, *args: str, **env: str) -> tuple[int, str, str]:
        for key in ("EPO", "NCTX", "WEIGHT", "CFG", "SHOTS", "EXTRA_OPTS", "FORCE", "DRY_RUN", "ANCHOR"):
            monkeypatch.delenv(key, raising=False)
        for key, value in {"OUTPUT": str(tmp_path / "out"), "CFG": "world_tiny", "EPO": "1", "SHOTS": "2",
                           **env}.items():
            monkeypatch.setenv(key, value)
        code = run_protocol.main([str(REPO / "scripts" / name), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def photos(tmp_path):
    return image_folder(tmp_path / "my_photos", CLASSES)


def test_own_images_through_the_atprompt_scripts(script, photos, tmp_path):
    out = tmp_path / "out"
    code, _, err = script("coop/atprompt_base2new_train.sh", "image_folder", str(photos), "1")
    assert code == 2 and "dataset 'ImageFolder' has no attributes from the paper" in err and "EXTRA_OPTS=" in err
    assert not (photos / "split_zhou_ImageFolder.json").exists() and not out.exists()  # nothing loaded or written

    # The evaluation a user planned with the training's options repeated (its settings given, as before).
    code, planned, _ = script("coop/atprompt_base2new_test.sh", "image_folder", str(photos), "1", DRY_RUN="1",
                              EXTRA_OPTS=ATTRIBUTES)
    assert code == 0 and "--config-file" in planned

    code, log, _ = script("coop/atprompt_base2new_train.sh", "image_folder", str(photos), "1", EXTRA_OPTS=ATTRIBUTES)
    assert code == 0 and "splitting the class folders into train / val / test" in log and "download" not in log
    run = out / RUN / "atprompt.attributes-color+shape" / "seed1"
    trained = read_record(str(run))
    assert trained["dataset_label"] == "my_photos" and trained["prompt"]["attributes"] == ["color", "shape"]

    # The evaluation without EXTRA_OPTS: it finds the run, takes its settings, and is named after it.
    code, dry, _ = script("coop/atprompt_base2new_test.sh", "image_folder", str(photos), "1", DRY_RUN="1")
    command = shlex.split(dry)
    assert command[command.index("--model-dir") + 1] == str(run) and "--config-file" not in command
    assert script("coop/atprompt_base2new_test.sh", "image_folder", str(photos), "1")[0] == 0
    evaluation = out / EVAL / "epo1_atprompt.attributes-color+shape" / "seed1"  # EPO is in the environment
    evaluated = read_record(str(evaluation))
    assert (evaluated["subsample"], evaluated["dataset_label"]) == ("new", "my_photos")
    assert evaluated["prompt"]["attributes"] == ["color", "shape"]
    assert evaluated["source"]["fingerprint"] == trained["fingerprint"]
    # Done either way: without the options, or with them repeated; and as planned with every setting given.
    for env in ({}, {"EXTRA_OPTS": ATTRIBUTES}):
        assert "Skip this job" in script("coop/atprompt_base2new_test.sh", "image_folder", str(photos), "1", **env)[1]
    given = run_spec.build_parser().parse_args(shlex.split(planned)[2:])
    assert run_spec.run_identity(given, run_spec.setup_cfg(given))["fingerprint"] == evaluated["fingerprint"]


def test_an_evaluation_names_the_training_runs_it_cannot_choose_between(script, photos, tmp_path):
    for attributes in (ATTRIBUTES, "TRAINER.ATPROMPT.ATTRIBUTES \"['size']\""):
        code = script("coop/atprompt_base2new_train.sh", "image_folder", str(photos), "1", EXTRA_OPTS=attributes)[0]
        assert code == 0
    code, _, err = script("coop/atprompt_base2new_test.sh", "image_folder", str(photos), "1")
    assert code == 2 and "holds several training runs of seed1" in err
    assert "atprompt.attributes-color+shape, atprompt.attributes-size" in err and "set EXTRA_OPTS" in err
    assert script("coop/atprompt_base2new_test.sh", "image_folder", str(photos), "1", EXTRA_OPTS=ATTRIBUTES)[0] == 0

    code, _, err = script("coop/atprompt_base2new_test.sh", "image_folder", str(photos), "2")
    assert code == 2 and f"no training run to evaluate in {tmp_path / 'out' / RUN / 'seed2'}" in err
    assert "run atprompt_base2new_train.sh first" in err and "--model-dir" not in err


def test_own_images_through_the_anchoropt_scripts(script, photos, tmp_path):
    code, _, err = script("coop/anchoropt_pretrain_anchor.sh", "image_folder", str(photos), "1")
    command = (f"python3 gpt_query.py --descriptions --dataset-config-file configs/datasets/image_folder.yaml "
               f"--root {photos} --output output/descriptions/my_photos.json")
    assert code == 2 and "dataset ImageFolder has no class descriptions" in err and command in err
    assert 'EXTRA_OPTS="TRAINER.ANCHOROPT.DESCRIPTIONS output/descriptions/my_photos.json"' in err
    assert "defaults exist" not in err and not (photos / "split_zhou_ImageFolder.json").exists()

    descriptions = tmp_path / "descriptions" / "my_photos.json"
    given = f"TRAINER.ANCHOROPT.DESCRIPTIONS {descriptions}"
    code, _, err = script("coop/anchoropt_pretrain_anchor.sh", "image_folder", str(photos), "1", EXTRA_OPTS=given)
    assert code == 2 and f"no class-description file {descriptions}: write it with `python3 gpt_query.py" in err

    descriptions.parent.mkdir()
    descriptions.write_text(json.dumps({name: [f"a {name}.", f"a photo of a {name}."] for name in CLASSES}))
    assert script("coop/anchoropt_pretrain_anchor.sh", "image_folder", str(photos), "1", EXTRA_OPTS=given)[0] == 0
    (stage_one,) = (tmp_path / "out").glob("my_photos/CoOp_Pretrain_Anchor/*/*/*/seed1")
    assert stage_one.parent.name == "anchoropt.descriptions-my_photos"  # the file's name, not its path

    assert script("coop/anchoropt_base2new_train.sh", "image_folder", str(photos), "1", ANCHOR=str(stage_one))[0] == 0
    assert script("coop/anchoropt_base2new_test.sh", "image_folder", str(photos), "1")[0] == 0  # no ANCHOR needed
    (evaluation,) = (tmp_path / "out").glob("my_photos/CoOp_AnchorOPT/*/*/seed1/evaluation")
    assert read_record(str(evaluation))["method"] == "CoOp_AnchorOPT"


def test_llm_files_of_own_images_are_named_after_their_folder():
    assert gpt_query.output_name("image_folder", "/data/my_photos/") == "my_photos"
    assert gpt_query.output_name("caltech101", "/data") == "caltech101"
    assert gpt_query.output_name(None, None) == "classes"
