"""`train.py --eval-only --model-dir RUN` takes every setting of the model from the run's checkpoint: nothing of the
training needs repeating, a setting given that contradicts it is refused naming both values, and the attributes it
learned with hold on data that has no attribute table."""

import os
import shutil

import pytest
from fake_data import REPO, run_args

import train
from dassl.engine.records import read_record

TRAINED = [  # what an evaluation must not need repeated: other than every default and the config file
    "DATASET.SUBSAMPLE_CLASSES", "base",
    "OPTIM.MAX_EPOCH", "1",
    "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "TRAINER.COOP.N_CTX", "3",
    "TRAINER.COOP.PREC", "fp32",
    "TRAINER.ATPROMPT.ATTRIBUTES", "['color', 'shape', 'size']",
    "TRAINER.ATPROMPT.N_ATTS", "[1]",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root, tiny_vit_path):
    """A CoOp+ATPrompt run trained on the base classes with settings of its own."""
    folder = tmp_path_factory.mktemp("runs") / "coop_atp"
    assert train.main(run_args(data_root, folder, "CoOp_ATP", tiny_vit_path, "CoOp/vit_b16.yaml", *TRAINED)) == 0
    return folder


def evaluate(run, out, data_root, *args) -> int:
    return train.main(["--eval-only", "--model-dir", str(run), "--output-dir", str(out), "--root", str(data_root),
                       *map(str, args)])


def test_an_evaluation_from_the_record_alone_is_the_training_runs_final_test(tmp_path, data_root, run):
    assert evaluate(run, tmp_path / "eval", data_root, "DATALOADER.NUM_WORKERS", "0") == 0
    trained, evaluated = read_record(str(run)), read_record(str(tmp_path / "eval"))
    assert (evaluated["trainer"], evaluated["dataset"], evaluated["subsample"], evaluated["seed"]) == (
        "CoOp_ATP", "Caltech101", "base", 1)  # without a dataset given: the training run's data and seed
    assert evaluated["prompt"] == trained["prompt"] == {"n_ctx": 3, "attributes": ["color", "shape", "size"],
                                                        "n_att": [1, 1, 1]}
    assert evaluated["metrics"] == trained["metrics"]  # the same model on the same images
    model_keys = [k for k in trained["settings"] if k.startswith(("MODEL.", "INPUT.", "TRAINER."))]
    assert {k: evaluated["settings"][k] for k in model_keys} == {k: trained["settings"][k] for k in model_keys}
    log = (tmp_path / "eval" / "log.txt").read_text()
    assert "the settings of the model are those of its training run" in log and "runs without ATPrompt" not in log


def test_another_dataset_and_classes_come_from_the_command_line(tmp_path, data_root, run):
    out = tmp_path / "eval"
    assert evaluate(run, out, data_root, "--dataset-config-file", REPO + "/configs/datasets/caltech101.yaml",
                    "--seed", "2", "DATASET.SUBSAMPLE_CLASSES", "new", "DATASET.NUM_SHOTS", "2",
                    "DATALOADER.NUM_WORKERS", "0") == 0
    record = read_record(str(out))
    assert (record["subsample"], record["seed"], record["shots"]) == ("new", 2, 2)
    assert record["source"]["fingerprint"] == read_record(str(run))["fingerprint"]


@pytest.mark.parametrize(("given", "message"), [
    (("TRAINER.COOP.N_CTX", "16"), "TRAINER.COOP.N_CTX is 16 (on the command line) but 3 in training"),
    (("--config-file", f"{REPO}/configs/trainers/CoOp/vit_b16.yaml"),
     f"INPUT.SIZE is (224, 224) (--config-file {REPO}/configs/trainers/CoOp/vit_b16.yaml) but (32, 32) in training"),
    (("--trainer", "CoCoOp"), "TRAINER.NAME is 'CoCoOp' (on the command line) but 'CoOp_ATP' in training"),
    (("TRAINER.ATPROMPT.USE_ATPROMPT", "False"), "TRAINER.ATPROMPT.USE_ATPROMPT is False (on the command line) but "
                                                 "True in training"),
    (("TRAINER.ATPROMPT.ATTRIBUTES", "['color', 'shape']"),
     "give the attributes [('color', 1), ('shape', 1)] but [('color', 1), ('shape', 1), ('size', 1)] in training"),
])  # fmt: skip
def test_a_setting_given_against_the_checkpoint_is_refused_naming_both(tmp_path, data_root, run, capsys, given,
                                                                       message):
    assert evaluate(run, tmp_path / "eval", data_root, *given) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err and "leave them out" in err
    assert not (tmp_path / "eval").exists()


def test_settings_given_as_trained_are_taken(tmp_path, data_root, run):
    """The original's way: the trainer name, the switch, the prompt size and the attributes repeated."""
    out = tmp_path / "eval"
    assert evaluate(run, out, data_root, "--trainer", "CoOp", "DATALOADER.NUM_WORKERS", "0",
                    "TRAINER.COOP.N_CTX", "3", "TRAINER.ATPROMPT.USE_ATPROMPT", "True",
                    "TRAINER.ATPROMPT.ATT1_TEXT", "color", "TRAINER.ATPROMPT.ATT2_TEXT", "shape",
                    "TRAINER.ATPROMPT.ATT3_TEXT", "size", "TRAINER.ATPROMPT.N_ATT1", "1",
                    "TRAINER.ATPROMPT.N_ATT2", "1", "TRAINER.ATPROMPT.N_ATT3", "1") == 0
    assert read_record(str(out))["metrics"] == read_record(str(run))["metrics"]


def test_attributes_from_a_table_hold_on_data_without_one(tmp_path, data_root, tiny_vit_path):
    """A model trained with Caltech101's table attributes, evaluated on an image folder (which has no table): the
    original asked for the attributes, after loading the data and CLIP."""
    run = tmp_path / "run"
    assert train.main(run_args(data_root, run, "CoOp_ATP", tiny_vit_path, "CoOp/vit_b16.yaml", "OPTIM.MAX_EPOCH",
                               "1", "DATASET.SUBSAMPLE_CLASSES", "base")) == 0
    folder = tmp_path / "my_photos"
    shutil.copytree(os.path.join(data_root, "caltech-101", "101_ObjectCategories"), folder)
    out = tmp_path / "eval"
    assert train.main(["--eval-only", "--model-dir", str(run), "--output-dir", str(out), "--root", str(folder),
                       "--dataset-config-file", REPO + "/configs/datasets/image_folder.yaml",
                       "DATASET.NUM_SHOTS", "-1", "DATALOADER.NUM_WORKERS", "0"]) == 0
    record = read_record(str(out))
    assert record["dataset"] == "ImageFolder" and record["prompt"]["attributes"] == ["shape", "size"]
    assert record["settings"]["TRAINER.ATPROMPT.ATTRIBUTES"] == ["shape", "size"]  # the record says what was used
    assert "named in TRAINER.ATPROMPT.ATTRIBUTES" in (out / "log.txt").read_text()
