"""The run scripts: each is a one-line call of tools/run_protocol.py; the jobs it runs, their folders and settings."""

import shlex
import subprocess
from pathlib import Path

import pytest

from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY
from datasets import catalog
from tools import run_protocol

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (REPO / "scripts").glob("*/*.sh"))


def commands(monkeypatch, capsys, script: str, *args: str, **env: str) -> list[list[str]]:
    """The train.py commands `bash scripts/<script> ARGS` would run, relative to the repository."""
    monkeypatch.setenv("DRY_RUN", "1")
    for key in ("EPO", "NCTX", "WEIGHT", "CFG", "SHOTS", "OUTPUT", "EXTRA_OPTS", "DATA", "ANCHOR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert run_protocol.main([str(REPO / "scripts" / script), *args]) == 0
    lines = capsys.readouterr().out.replace(str(REPO) + "/", "").splitlines()
    return [shlex.split(line)[1:] for line in lines]


def option(command: list[str], key: str) -> str:
    return command[command.index(key) + 1]


def test_every_script_is_the_same_call_of_the_runner_and_runs_something(monkeypatch, capsys):
    for path in SCRIPTS:
        if path.name == "demo.sh":
            continue
        assert path.read_text().rstrip().endswith('tools/run_protocol.py" "$0" "$@"'), path
        args = ["data", "1"] if path.name.endswith("xd_train.sh") else ["caltech101", "data", "1"]
        jobs = commands(monkeypatch, capsys, str(path.relative_to(REPO / "scripts")), *args)
        assert jobs and all(job[0] == "train.py" for job in jobs), path


def test_every_script_runs_a_registered_trainer():
    # A dry run never builds the trainer, so a family naming an unregistered one would pass the test above.
    for name, script in run_protocol.scripts().items():
        assert script.family.trainer in TRAINER_REGISTRY, name


def test_folders_and_options_are_the_originals(monkeypatch, capsys):
    (train,) = commands(monkeypatch, capsys, "coop/atprompt_base2new_train.sh", "caltech101", "/data", "3")
    assert option(train, "--output-dir") == (
        "output/caltech101/CoOp_ATP/vit_b16_16shots/nctx2_cscFalse_ctpend/CTX_2_epo_100/seed3")
    assert (option(train, "--config-file"), option(train, "--root")) == ("configs/trainers/CoOp/vit_b16.yaml", "/data")
    for key, value in [("TRAINER.ATPROMPT.USE_ATPROMPT", "True"), ("TRAINER.ATPROMPT.N_ATT3", "2"),
                       ("OPTIM.MAX_EPOCH", "100"), ("DATASET.SUBSAMPLE_CLASSES", "base"), ("DATASET.NUM_SHOTS", "16")]:
        assert option(train, key) == value
    (test,) = commands(monkeypatch, capsys, "coop/atprompt_base2new_test.sh", "caltech101", "/data", "3")
    assert option(test, "--output-dir") == (
        "output/evaluation/CoOp_ATP/vit_b16_16shots/nctx2_cscFalse_ctp_end/caltech101/seed3")
    assert option(test, "--model-dir") == option(train, "--output-dir") and option(test, "--load-epoch") == "100"
    assert "--eval-only" in test and option(test, "DATASET.SUBSAMPLE_CLASSES") == "new"

    (cross,) = commands(monkeypatch, capsys, "coop/atprompt_xd_eval.sh", "oxford_pets", "/data", "2")
    assert option(cross, "--model-dir") == (
        "output/imagenet/CoOp_ATP/vit_b16_16shots/nctx4_cscFalse_ctpend_few_shots/CTX_4_epo_10/seed2")
    assert option(cross, "DATASET.SUBSAMPLE_CLASSES") == "all"  # the original evaluated half the classes


@pytest.mark.parametrize(("script", "dataset", "expected"), [
    ("coop/atprompt_base2new_train.sh", "dtd", {"TRAINER.COOP.N_CTX": "4", "OPTIM.MAX_EPOCH": "100"}),
    ("coop/atprompt_base2new_train.sh", "imagenet", {"TRAINER.COOP.N_CTX": "2", "OPTIM.MAX_EPOCH": "10"}),
    ("cocoop/atprompt_base2new_train.sh", "ucf101", {"TRAINER.COCOOP.N_CTX": "4", "OPTIM.MAX_EPOCH": "10"}),
    ("maple/atprompt_base2new_train.sh", "eurosat", {"TRAINER.MAPLE.N_CTX": "4", "OPTIM.MAX_EPOCH": "10"}),
    ("dept/atprompt_base2new_train.sh", "stanford_cars", {"TRAINER.DEPT.N_CTX": "2", "TRAINER.DEPT.WEIGHT": "0.6"}),
    ("kgcoop/vanilla_base2new_train.sh", "caltech101", {"TRAINER.KGCOOP.W": "8.0", "OPTIM.MAX_EPOCH": "100"}),
    ("cocoop/anchoropt_base2new_train.sh", "sun397", {"TRAINER.ANCHOROPT.N_CTX": "8", "OPTIM.MAX_EPOCH": "10",
                                                      "TRAINER.ANCHOROPT.KD_WEIGHT": "1000.0",
                                                      "TRAINER.ANCHOROPT.KD_TEMPERATURE": "2.0",
                                                      "TRAINER.ANCHOROPT.PROMPT_CE_WEIGHT": "10.0"}),
    ("maple/anchoropt_base2new_train.sh", "stanford_cars", {"TRAINER.ANCHOROPT.KD_WEIGHT": "0.0",
                                                            "TRAINER.ANCHOROPT.KD_TEMPERATURE": "0.0",
                                                            "OPTIM.MAX_EPOCH": "20"}),
    ("dept/anchoropt_base2new_train.sh", "fgvc_aircraft", {"TRAINER.ANCHOROPT.N_CTX": "4", "OPTIM.MAX_EPOCH": "20",
                                                           "TRAINER.DEPT.WEIGHT": "0.6",
                                                           "TRAINER.ANCHOROPT.KD_WEIGHT": "0.0"}),
])  # fmt: skip
def test_the_methods_per_dataset_settings(monkeypatch, capsys, script, dataset, expected):
    (job,) = commands(monkeypatch, capsys, script, dataset, "data", "1")
    assert {key: option(job, key) for key in expected} == expected


# Caltech101 rows of the original docs/AnchorOPT.md tables.
@pytest.mark.parametrize(("method", "trainer", "cfg", "run"), [
    ("coop", "CoOp_AnchorOPT", "vit_b16", "CTX_4_ACTX_1_EPO_100_CE_100.0_KD_W_1000.0_T_2.0"),
    ("cocoop", "CoCoOp_AnchorOPT", "vit_b16_c4_ep10_batch1_ctxv1", "CTX_4_ACTX_1_EPO_20_CE_10.0_KD_W_1000.0_T_4.0"),
    ("maple", "MaPLe_AnchorOPT", "vit_b16_c2_ep5_batch4_2ctx", "CTX_8_ACTX_1_EPO_10_CE_10.0_KD_W_1000.0_T_2.0"),
    ("dept", "DePT_AnchorOPT", "vit_b16_ep10_bs4_lr35", "CTX_4_ACTX_1_EPO_10_CE_10.0_W_0.5"),
])  # fmt: skip
def test_anchoropt_folders_are_the_originals_with_the_evaluation_inside(monkeypatch, capsys, method, trainer, cfg,
                                                                        run):
    (train,) = commands(monkeypatch, capsys, f"{method}/anchoropt_base2new_train.sh", "caltech101", "/data", "2")
    folder = f"output/caltech101/{trainer}/{cfg}_16shots/{run}/seed2"
    assert option(train, "--output-dir") == folder and option(train, "--trainer") == trainer
    (test,) = commands(monkeypatch, capsys, f"{method}/anchoropt_base2new_test.sh", "caltech101", "/data", "2")
    assert option(test, "--output-dir") == f"{folder}/evaluation" and option(test, "--model-dir") == folder
    assert option(test, "DATASET.SUBSAMPLE_CLASSES") == "new"


def test_the_anchor_is_an_option_of_stage_two_and_names_no_folder(monkeypatch, capsys):
    plain = commands(monkeypatch, capsys, "maple/anchoropt_base2new_train.sh", "dtd", "data", "1")
    for script in ("maple/anchoropt_base2new_train.sh", "maple/anchoropt_base2new_test.sh"):
        (job,) = commands(monkeypatch, capsys, script, "dtd", "data", "1", ANCHOR="my/anchor.pth")
        assert option(job, "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS") == "my/anchor.pth"
    assert option(plain[0], "--output-dir") == option(commands(monkeypatch, capsys, "maple/anchoropt_base2new_train.sh",
                                                               "dtd", "data", "1", ANCHOR="x")[0], "--output-dir")
    (stage_one,) = commands(monkeypatch, capsys, "coop/anchoropt_pretrain_anchor.sh", "dtd", "data", "1", ANCHOR="x")
    assert "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS" not in stage_one


def test_the_scripts_use_the_feature_cache_unless_told_not_to(monkeypatch, capsys):
    monkeypatch.delenv("FEATURE_CACHE")
    (job,) = commands(monkeypatch, capsys, "coop/atprompt_base2new_test.sh", "dtd", "data", "1")
    assert option(job, "FEATURE_CACHE.ENABLED") == "True"
    (off,) = commands(monkeypatch, capsys, "coop/atprompt_base2new_test.sh", "dtd", "data", "1", FEATURE_CACHE="0")
    assert "FEATURE_CACHE.ENABLED" not in off and option(off, "--output-dir") == option(job, "--output-dir")


def test_the_environment_overrides_and_extra_options_may_be_quoted(monkeypatch, capsys):
    extra = "TRAINER.ATPROMPT.ATTRIBUTES \"['shape', 'material']\" INPUT.SIZE \"(224, 224)\""
    jobs = commands(monkeypatch, capsys, "dept/atprompt_base2new_test.sh", "dtd", "data", "1", "2", EPO="7",
                    NCTX="3", WEIGHT="0.9", SHOTS="4", OUTPUT="out", CFG="vit_b16_ep20_bs4_lr35", EXTRA_OPTS=extra)
    # WEIGHT is not part of DePT's folder layout and EXTRA_OPTS never is: they add a folder before seed<N>.
    varied = "weight0.9_atprompt.attributes-shape+material_input.size-224+224"
    assert [option(job, "--output-dir") for job in jobs] == [
        f"out/evaluation/DePT_ATP/vit_b16_ep20_bs4_lr35_4shots/CTX_3_epo_7/dtd/{varied}/seed{s}" for s in (1, 2)]
    assert option(jobs[0], "--model-dir") == f"out/dtd/DePT_ATP/vit_b16_ep20_bs4_lr35_4shots/CTX_3_epo_7/{varied}/seed1"
    assert option(jobs[0], "TRAINER.DEPT.WEIGHT") == "0.9" and option(jobs[0], "--load-epoch") == "7"
    assert jobs[0][-4:] == ["TRAINER.ATPROMPT.ATTRIBUTES", "['shape', 'material']", "INPUT.SIZE", "(224, 224)"]


@pytest.mark.parametrize(("alias", "target"), [
    ("coop/vanila_base2new_train.sh", "coop/vanilla_base2new_train.sh"),
    ("dept/vanila_base2new_test.sh", "dept/vanilla_base2new_test.sh"),
    ("maple/atprompt_xd_test.sh", "maple/atprompt_xd_eval.sh"),
    ("attribute_compute/main.sh", "attribute_search/main.sh"),
])  # fmt: skip
def test_the_originals_script_names_run_the_same_jobs(monkeypatch, capsys, alias, target):
    assert commands(monkeypatch, capsys, alias, "oxford_pets") == commands(monkeypatch, capsys, target, "oxford_pets")


def test_zero_shot_and_search_arguments(monkeypatch, capsys):
    jobs = commands(monkeypatch, capsys, "zsclip/zeroshot.sh", "food101", "data", "all")
    assert [option(j, "--output-dir") for j in jobs] == ["output/evaluation/ZeroshotCLIP/vit_b16_all/food101/seed1"]
    (search,) = commands(monkeypatch, capsys, "attribute_search/main.sh", "food101", "data", "a b c")
    assert option(search, "TRAINER.ATTRIBUTE_SEARCH.BASES") == "['a', 'b', 'c']"
    assert option(search, "OPTIM.MAX_EPOCH") == "40" and option(search, "TRAINER.COOP.N_ATT1") == "4"
    assert "TRAINER.COOP.N_ATT5" not in search  # the original's script passed N_ATT2..5, which nothing read


def test_help_usage_and_bad_datasets(capsys):
    script = str(REPO / "scripts/coop/atprompt_base2new_train.sh")
    assert run_protocol.main([script, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CoOp+ATPrompt, base-to-novel") and "DRY_RUN" in out and "EPO / NCTX" in out
    assert run_protocol.main([script]) == 2
    assert capsys.readouterr().err.startswith("error: missing DATASET")
    assert run_protocol.main([script, "Caltech101"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'Caltech101'. Did you mean caltech101?" in err and "oxford_pets" in err


def test_unknown_scripts_and_bad_shot_counts_are_one_line_and_empty_settings_take_the_default(monkeypatch, capsys):
    assert run_protocol.main([str(REPO / "scripts/coop/nothing.sh"), "dtd"]) == 2
    err = capsys.readouterr().err
    assert "scripts/coop/nothing.sh is not a run script this runner knows" in err and "Traceback" not in err
    assert run_protocol.main([str(REPO / "scripts/coop/nothing.sh"), "--help"]) == 0
    assert capsys.readouterr().out.startswith("The one runner behind every scripts/")
    for script, shots in (("coop/atprompt_base2new_train.sh", "abc"), ("coop/atprompt_fewshot_train.sh", "1 0")):
        monkeypatch.setenv("SHOTS", shots)
        assert run_protocol.main([str(REPO / "scripts" / script), "dtd"]) == 2
        err = capsys.readouterr().err
        assert f"error: SHOTS is '{shots}': give images per class as whole numbers of 1 or more" in err
    jobs = commands(monkeypatch, capsys, "coop/atprompt_fewshot_train.sh", "dtd", "data", "1", SHOTS="", CFG="")
    assert [option(j, "DATASET.NUM_SHOTS") for j in jobs] == ["1", "2", "4", "8", "16"]
    (zero_shot,) = commands(monkeypatch, capsys, "zsclip/zeroshot.sh", "dtd", "data", "all", CFG="")
    assert option(zero_shot, "--config-file").endswith("CoOp/vit_b16.yaml")


def test_through_bash(tmp_path):
    done = subprocess.run(["bash", "scripts/maple/vanilla_xd_train.sh", "data", "4"], cwd=REPO, text=True,
                          capture_output=True, env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1",
                                                    "PYTHON": subprocess.check_output(["which", "python3"],
                                                                                      text=True).strip()})
    assert done.returncode == 0, done.stderr
    assert "output/imagenet/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots_few_shots" in done.stdout
    assert subprocess.run(["bash", "scripts/coop/atprompt_base2new_train.sh"], cwd=REPO,
                          capture_output=True).returncode == 2


def test_the_catalog_covers_every_dataset_config_and_reader():
    keys = sorted(p.stem for p in (REPO / "configs" / "datasets").glob("*.yaml"))
    assert sorted(info.key for info in catalog.DATASETS) == keys
    for info in catalog.DATASETS:
        assert info.name in DATASET_REGISTRY, info.name
        assert f'NAME: "{info.name}"' in (REPO / "configs" / "datasets" / f"{info.key}.yaml").read_text()
    assert len(catalog.by_role("benchmark")) == 11 and len(catalog.by_role("variant")) == 4
