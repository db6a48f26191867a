"""A method is one self-describing unit: its module declares everything the runner, the tables and the benchmark
read (trainers/method.py), and the library never imports the command line."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_data import build_from, make_caltech101, run_args

from dassl.engine import TRAINER_REGISTRY
from tools import run_protocol
from trainers import run_spec
from trainers.method import methods, run_settings, table_order
from trainers.original import ALIASES

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("clip", "dassl", "datasets", "trainers")  # in layer order: each may import only those before it
COMMAND_LINE = ("tools", "train", "gpt_query")


def imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports (absolute imports only: the project uses no relative ones across
    packages)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_library_never_imports_the_command_line_and_its_layers_only_look_down():
    for layer, package in enumerate(LIBRARY):
        above = set(LIBRARY[layer + 1:]) | set(COMMAND_LINE)
        for path in sorted((REPO / package).rglob("*.py")):
            wrong = imported_packages(path) & above
            assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"
    for path in sorted((REPO / "tools").glob("*.py")):  # a tool imports train.py only to run it
        if "train" in imported_packages(path):
            assert "train.main(" in path.read_text(), f"{path.relative_to(REPO)} uses train.py as a library"


def test_every_declared_script_exists_and_every_script_is_declared():
    declared = set(run_protocol.scripts())
    on_disk = {f"{p.parent.name}/{p.stem}" for p in (REPO / "scripts").glob("*/*.sh") if p.name != "demo.sh"}
    assert declared <= on_disk, sorted(declared - on_disk)
    for name in sorted(on_disk - declared):  # the original's names for the same scripts
        assert run_protocol.script_of(f"scripts/{name}.sh") in run_protocol.scripts().values(), name


def test_the_listing_names_every_family_and_its_scripts(capsys):
    assert run_protocol.main(["--help"]) == 0 and "--list" in capsys.readouterr().out
    assert run_protocol.main([]) == 2 and "--list" in capsys.readouterr().err
    assert run_protocol.main(["--list"]) == 0
    out = capsys.readouterr().out
    for _, card in methods():
        for family in card.families:
            assert f"{card.scripts}/{family.name} " in out
            assert all(f"{stem}.sh" in out for stem in family.script_stages())


def test_every_method_has_a_node_of_its_own_and_the_tables_order_every_label():
    nodes = [card.node for _, card in methods() if card.config is not None]
    assert len(nodes) == len(set(nodes))
    order = table_order()
    assert order[:3] == ["ZeroshotCLIP", "AnchorPretrain", "CoOp"] and "KgCoOp_ATP_AnchorOPT" in order
    for alias, target in ALIASES.items():
        assert TRAINER_REGISTRY.get(alias) is TRAINER_REGISTRY.get(target.method)


def config(*opts, trainer="DePT", files=()):
    args = run_spec.build_parser().parse_args(["--trainer", trainer, *files, *map(str, opts)])
    return run_spec.config_and_notes(args)


def test_command_line_flags_are_taken_as_given():
    cfg, _ = config("--output-dir", "2024", "--root", "1e3", "--backbone", "True", "--seed", "3", trainer="CoOp")
    assert (cfg.OUTPUT_DIR, cfg.DATASET.ROOT, cfg.MODEL.BACKBONE.NAME, cfg.SEED) == ("2024", "1e3", "True", 3)


def test_the_originals_keys_are_moved_to_the_methods_own_node():
    cfg, notes = config("TRAINER.LINEAR_PROBE.WEIGHT", 0.6, "TRAINER.COOP.N_CTX", 3, "TRAINER.FILM.LINEAR_PROBE",
                        False)
    assert (cfg.TRAINER.DEPT.WEIGHT, cfg.TRAINER.DEPT.N_CTX, cfg.TRAINER.DEPT.FILM) == (0.6, 3, False)
    assert "Note: the original's key TRAINER.LINEAR_PROBE.WEIGHT -> TRAINER.DEPT.WEIGHT" in notes
    kg, _ = config("TRAINER.COOP.W", 8.0, trainer="KgCoOp_ATP")
    assert kg.TRAINER.KGCOOP.W == 8.0
    coop, _ = config("TRAINER.COOP.N_CTX", 3, trainer="CoOp")  # CoOp's own key: nothing to move
    assert coop.TRAINER.COOP.N_CTX == 3 and coop.TRAINER.DEPT.N_CTX == 16
    # The last one set wins, as for any key: the original's yaml sets a key that a later option changes.
    assert config("TRAINER.COOP.W", 8.0, "TRAINER.KGCOOP.W", 4.0, trainer="KgCoOp")[0].TRAINER.KGCOOP.W == 4.0
    assert config("TRAINER.KGCOOP.W", 4.0, "TRAINER.COOP.W", 8.0, trainer="KgCoOp")[0].TRAINER.KGCOOP.W == 8.0


def test_the_originals_kgcoop_yaml_still_word_initialises(tmp_path):
    original = tmp_path / "kgcoop.yaml"
    original.write_text("TRAINER:\n  COOP:\n    CTX_INIT: True\n")
    cfg, _ = config(trainer="KgCoOp", files=("--config-file", str(original)))
    assert cfg.TRAINER.KGCOOP.CTX_INIT == "a photo of a"


def test_keys_a_run_never_reads_are_noted_and_decide_nothing():
    cfg, notes = config("TRAINER.MAPLE.N_CTX", 7, "TRAINER.COOP.N_ATT3", 2, trainer="CoOp")
    assert "Note: TRAINER.MAPLE.N_CTX is MaPLe's setting; CoOp does not read it" in notes
    assert any(note.startswith("Note: TRAINER.COOP.N_ATT3 is not read") for note in notes)
    plain, _ = config(trainer="CoOp")
    coop = TRAINER_REGISTRY.get("CoOp")
    assert run_settings(cfg, "train", coop) == run_settings(plain, "train", coop)
    assert not any(key.startswith(("TRAINER.MAPLE.", "TRAINER.LINEAR_PROBE.")) for key in run_settings(cfg, "train",
                                                                                                       coop))


def test_staged_learning_rates_work_for_a_prompt_learner(tmp_path, tiny_vit_path):
    make_caltech101(str(tmp_path))
    trainer = build_from(run_args(tmp_path, tmp_path / "out", "CoOp", tiny_vit_path, "CoOp/vit_b16.yaml",
                                  "OPTIM.STAGED_LR", "True", "OPTIM.NEW_LAYERS", "('prompt_learner',)",
                                  "OPTIM.BASE_LR_MULT", "0.1"))
    groups = {len(group["params"]): group["initial_lr"] for group in trainer.optim.param_groups}
    assert groups[1] == pytest.approx(trainer.cfg.OPTIM.LR)  # the context tokens
    assert len(groups) == 2 and min(groups.values()) == pytest.approx(0.1 * trainer.cfg.OPTIM.LR)


def test_a_copied_method_module_is_listed_benchmarked_and_ordered_without_other_edits(tmp_path):
    """A method is its module: a copy of KgCoOp's under other names appears everywhere, no other file edited."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("clip", "dassl", "datasets", "configs", "templates"):
        os.symlink(REPO / name, copy / name)
    shutil.copytree(REPO / "scripts", copy / "scripts")
    shutil.copytree(REPO / "tools", copy / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "trainers", copy / "trainers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "train.py", copy / "train.py")
    source = (REPO / "trainers" / "kgcoop.py").read_text()
    renamed = source.replace("KgCoOp", "KgCoOpTwo").replace("KGCOOP", "KGCOOPTWO").replace('"kgcoop"', '"kgcooptwo"')
    (copy / "trainers" / "kgcoop_two.py").write_text(renamed)

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=copy, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert re.search(r"\nkgcooptwo/atprompt_base2new +KgCoOpTwo_ATP ", run("tools/run_protocol.py", "--list"))
    assert "scripts/kgcooptwo/atprompt_base2new_train.sh" in run("tools/run_protocol.py", "--write-scripts")
    header = (copy / "scripts/kgcooptwo/atprompt_base2new_train.sh").read_text()
    assert header.startswith("#!/usr/bin/env bash\n# KgCoOpTwo+ATPrompt, base-to-novel: train on the base classes")
    assert "declared in trainers/kgcoop_two.py" in header
    out = run("-c", "from tools import benchmark, results; print([c.name for c in benchmark.cases()]); "
                    "print(results.METHOD_ORDER)")
    assert "'kgcooptwo-train'" in out and "'kgcooptwo-anchoropt-eval'" in out
    assert "'KgCoOp_ATP_AnchorOPT', 'KgCoOpTwo', 'KgCoOpTwo_ATP'" in out
