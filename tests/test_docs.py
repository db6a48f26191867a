"""The documentation is tested: every command block of README.md and docs/*.md runs here in the tiny form its
directive declares (fake data in the real layouts, the tiny CLIP, one epoch), or says why it cannot; what the docs
show as output is checked against what the commands print; and the paths, tests, links, config keys, defaults and
tool flags the docs name exist (tests/doc_blocks.py says how; tests/doc_world.py runs the commands)."""

from pathlib import Path

import pytest
from doc_blocks import DOCS, REPO, blocks, problems
from doc_world import DocRun, make_checkout, make_data


def name(doc: Path) -> str:
    return str(doc.relative_to(REPO))


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_every_command_block_is_run_or_marked_and_every_name_exists(doc):
    assert problems(name(doc), doc.read_text()) == []


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


def run_page(doc: str, text: str, folder: Path, data: Path, monkeypatch, capsys) -> list[str]:
    """Run the blocks of a page in order in one checkout; what went wrong."""
    run = DocRun(make_checkout(folder, data), monkeypatch, lambda: "".join(capsys.readouterr()))
    return [failure for block in blocks(doc, text) if block.directive and block.directive.kind in ("run", "output")
            for failure in run.block(block)]


def runs_something(doc: Path) -> bool:
    return any(block.directive and block.directive.kind == "run" for block in blocks(name(doc), doc.read_text()))


@pytest.mark.parametrize("doc", [doc for doc in DOCS if runs_something(doc)], ids=name)
def test_the_commands_run_and_print_what_the_docs_show(doc, tmp_path, data, monkeypatch, capsys):
    failures = run_page(name(doc), doc.read_text(), tmp_path, data, monkeypatch, capsys)
    assert not failures, "\n\n".join(failures)


# Each mutation of a page, and the one problem it must give.
MUTATIONS = [
    ("README.md", "<!-- doc-test: covered by tests/test_demo.py -->\n", "",
     "a bash block without a doc-test directive"),
    ("README.md", "```text\n[A1] color", "```\n[A1] color", "a block without a language"),
    ("README.md", "bash scripts/coop/atprompt_base2new_test.sh caltech101 /path/to/data 1 2 3    #",
     "bash scripts/coop/atprompt_b2n_test.sh caltech101 /path/to/data 1 2 3    #",
     "no scripts/coop/atprompt_b2n_test.sh in the repository"),
    ("README.md", "switch, `TRAINER.ANCHOROPT.USE_ANCHOROPT`", "switch, `TRAINER.ANCHOROPT.USE_ANCHOR`",
     "no config key TRAINER.ANCHOROPT.USE_ANCHOR"),
    ("README.md", "--classnames-file my_classes.txt", "--classes-file my_classes.txt",
     "tools/predict.py has no option --classes-file"),
    ("docs/DATASETS.md", "([Attribute_Search.md](Attribute_Search.md))", "([Attribute_Search.md](Attribute_search.md))",
     "the link to Attribute_search.md names no file"),
    ("README.md", "(docs/Attribute_Search.md#class-descriptions-for-anchoropt)",
     "(docs/Attribute_Search.md#descriptions)", "the link to docs/Attribute_Search.md#descriptions names no heading"),
    ("README.md", "skip (needs the network: pip installs the requirements from PyPI)", "skip (it is slow)",
     "begins with none of"),
    ("README.md", "covered by tests/test_demo.py", "covered by tests/test_scripts.py",
     "is run by none of tests/test_scripts.py"),
    ("README.md", 'run; replace "--gpus 0,1,2,3" -> --dry-run', "run; replace --gpus", "bad doc-test directive"),
    ("docs/RELIABILITY.md", "`test_faults.py::test_a_killed_run_resumes_from_its_last_epoch`",
     "`test_faults.py::test_a_killed_run_resumes`", "no test test_a_killed_run_resumes in tests/test_faults.py"),
    ("docs/RELIABILITY.md", "<!-- doc-test: unknown TRAINER.COOP.USE_ATPROMPT (a misspelt key, as an example) -->\n",
     "", "no config key TRAINER.COOP.USE_ATPROMPT"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "old", "new", "problem"), MUTATIONS)
def test_an_unmarked_block_and_a_wrong_name_are_caught(doc, old, new, problem):
    text = (REPO / doc).read_text()
    assert text.count(old) == 1, old
    found = problems(doc, text.replace(old, new))
    assert len(found) == 1 and problem in found[0], found


def test_an_atprompt_trainer_without_its_switch_and_a_wrong_default_are_caught():
    page = ("<!-- doc-test: skip (needs real data) -->\n```bash\npython train.py --trainer CoOp_ATP --root DATA\n"
            "```\n\n| key | default |\n|---|---|\n| `OPTIM.LR` | 0.02 |\n")
    assert sorted(problems("docs/X.md", page)) == [
        "docs/X.md:2: --trainer CoOp_ATP without TRAINER.ATPROMPT.USE_ATPROMPT True runs the method alone",
        "docs/X.md:8: OPTIM.LR's default is 0.0003, not 0.02"]


def test_a_failing_command_and_a_wrong_output_are_caught(tmp_path, data, monkeypatch, capsys):
    page = "\n".join([
        "<!-- doc-test: run; env DRY_RUN=1 -->",
        "```bash",
        'DATASETS="caltech101 dtd"',
        "for d in $DATASETS; do",
        "    bash scripts/coop/vanilla_base2new_train.sh $d /path/to/data 1   # the dry run prints the command",
        "done",
        "python tools/summarize.py nowhere",
        "make all",
        "```",
        '<!-- doc-test: output of "bash scripts/coop/vanilla_base2new_train.sh"; vary /path/to/data -->',
        "```text",
        "python3 .../train.py --output-dir output/dtd/CoOp/vit_b16_16shots/nctx16_cscFalse_ctpend/CTX_16_epo_100/seed1 "
        "--root /path/to/data --seed 1 ...",
        "```",
        '<!-- doc-test: output of "bash scripts/coop/vanilla_base2new_train.sh" -->',
        "```text",
        "python3 .../train.py --output-dir output/dtd/CoOp/vit_b16_16shots/seed1 ...",
        "```",
    ])  # fmt: skip
    failures = run_page("docs/X.md", page, tmp_path, data, monkeypatch, capsys)
    assert len(failures) == 3, failures
    assert failures[0].startswith("docs/X.md:2: `python tools/summarize.py nowhere` ended with status 2:\nerror: ")
    assert failures[1].startswith("docs/X.md:2: `make all` ended with status 127:\n`make all` cannot run in the tests")
    assert failures[2].startswith("docs/X.md:15: `bash scripts/coop/vanilla_base2new_train.sh $d /path/to/data 1` "
                                  "printed no line like 'python3 .../train.py --output-dir output/dtd/CoOp/")
