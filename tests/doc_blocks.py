"""The fenced blocks of README.md and docs/*.md, the directives that say how the test suite runs each one, and the
checks of what the docs name: paths, tests, links, config keys and their documented defaults, tool flags.

A command block (bash, sh, shell, console or python) follows one directive, an HTML comment (GitHub does not show
it) that ends on the line before the fence:

    <!-- doc-test: run; env CFG=world_tiny EPO=1 SHOTS=2; replace /path/to/data -> data -->
    <!-- doc-test: skip (needs the network: pip downloads the packages) -->
    <!-- doc-test: covered by tests/test_demo.py -->

`run` runs the block in tests/test_docs.py, in a tiny form that its clauses (separated by `;`) declare:
- `env K=V ...`: the environment of the block's commands, as if exported before it;
- `replace OLD -> NEW`: OLD in the block's text becomes NEW (the fake data, the tiny CLIP's config, fewer epochs);
  an output block compared with the block's output gets the same replacements;
- `given PATH ...`: files a user brings: `DIR/` a folder of class folders of images, `*.jpg` / `*.png` an image,
  `*.txt` class names, one per line, `*.pth.tar` an AnchorOPT anchor in the original's released format;
- `first "COMMAND"`: a command run before the block, for what it needs that no earlier block makes;
- `llm`: gpt_query.py talks to a stand-in chat model, not to an API (OPENAI_API_KEY holds a stand-in key);
- `expect TEXT`: the block's output holds TEXT (a line of it, matched as an output block's line is).
`skip (REASON)` says why the suite cannot run the block; REASON begins with one of SKIP_REASONS. `covered by FILE
...` names the test files that run the block's commands in a tiny form (a script by its path, a tool by its path or
its main(), a test file by being one of them).

A block of another language may show what a command of an earlier block of its page printed:

    <!-- doc-test: output of "python gpt_query.py --dataset-config-file"; vary 3f0c -->

Each of its lines but `...` lines matches a line of the output of the last command that begins with the quoted
text, in order: a number matches any number, `...` within a line and every `vary` text match any text. With the
clause `whole`, the block is all the command prints, line for line.

A name a page shows that does not exist (a misspelt key in an example, a file a command writes) is declared on the
page, with a remark in parentheses:

    <!-- doc-test: unknown TRAINER.COOP.USE_ATPROMPT (a misspelt key, as an example) -->
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import glob
import importlib
import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from dassl.config import get_key

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console", "python"}
SKIP_REASONS = (
    "needs real CLIP weights", "needs real data", "needs a GPU", "needs several GPUs", "needs Slurm",
    "needs the network", "needs an API key", "a long run", "a synopsis",
)  # fmt: skip
DIRECTIVE = re.compile(r"<!--\s*doc-test:(.*?)-->", re.DOTALL)
FENCE = re.compile(r"^(\s*)```(.*)$")


@dataclass
class Directive:
    kind: str  # "run", "skip", "covered" or "output"
    reason: str = ""  # skip: why; covered: the test files
    env: dict[str, str] = field(default_factory=dict)
    replace: list[tuple[str, str]] = field(default_factory=list)
    given: list[str] = field(default_factory=list)
    first: list[str] = field(default_factory=list)
    llm: bool = False
    expect: list[str] = field(default_factory=list)
    output_of: str = ""
    vary: list[str] = field(default_factory=list)
    whole: bool = False

    def apply(self, text: str) -> str:
        """`text` with the replacements of this block."""
        for old, new in self.replace:
            text = text.replace(old, new)
        return text


@dataclass
class Block:
    doc: str  # the page, relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    directive: Directive | None
    problem: str = ""  # what is wrong with the directive, if anything

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def is_command(self) -> bool:
        return self.language in COMMAND_LANGUAGES


def parse_directive(body: str) -> Directive:
    """A directive's text after `doc-test:`; ValueError says what is wrong with it."""
    body = " ".join(body.split())
    if body.startswith("skip"):
        match = re.fullmatch(r"skip \((.+)\)", body)
        if not match:
            raise ValueError("write `skip (REASON)`")
        if not match.group(1).startswith(SKIP_REASONS):
            raise ValueError(f"the reason '{match.group(1)}' begins with none of: {', '.join(SKIP_REASONS)}")
        return Directive("skip", reason=match.group(1))
    if body.startswith("covered by "):
        return Directive("covered", reason=body.removeprefix("covered by "))
    lexer = shlex.shlex(body, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    clauses: list[list[str]] = [[]]
    for token in lexer:
        clauses.append([]) if token == ";" else clauses[-1].append(token)
    head, *rest = [clause for clause in clauses if clause]
    if head == ["run"]:
        directive = Directive("run")
    elif head[:2] == ["output", "of"] and len(head) == 3:
        directive = Directive("output", output_of=head[2])
    else:
        raise ValueError(f"'{' '.join(head)}': a directive is `run; ...`, `skip (REASON)`, `covered by FILE ...` or "
                         "`output of \"COMMAND\"; ...`")
    for name, *args in rest:
        if directive.kind == "output" and name not in ("vary", "whole"):
            raise ValueError(f"'{name}': an output directive takes `vary TEXT ...` and `whole`")
        if directive.kind == "run" and name in ("vary", "whole"):
            raise ValueError(f"'{name}' belongs to an output directive")
        if name == "env" and all("=" in arg for arg in args):
            directive.env.update(arg.split("=", 1) for arg in args)
        elif name == "replace" and len(args) == 3 and args[1] == "->":
            directive.replace.append((args[0], args[2]))
        elif name in ("given", "first", "expect", "vary") and args:
            getattr(directive, name).extend(args)
        elif name in ("llm", "whole") and not args:
            setattr(directive, name, True)
        else:
            raise ValueError(f"'{' '.join([name, *args])}': clauses are `env K=V ...`, `replace OLD -> NEW`, "
                             "`given PATH ...`, `first \"COMMAND\"`, `llm` and `expect TEXT`")
    return directive


def blocks(doc: str, text: str) -> list[Block]:
    """The fenced blocks of the page `doc` (its path relative to the repository) whose text is `text`."""
    # A directive belongs to the fence on the line after the one it ends on (1-based line numbers).
    directives = {text.count("\n", 0, match.end()) + 2: match.group(1) for match in DIRECTIVE.finditer(text)}
    lines = text.split("\n")
    found = []
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if not opening:
            continue
        fence, indent, language = number, opening.group(1), opening.group(2).strip()
        body = []
        while number < len(lines) and lines[number].strip() != "```":
            body.append(lines[number].removeprefix(indent))
            number += 1
        number += 1
        directive, problem = None, ""
        if fence in directives:
            try:
                directive = parse_directive(directives[fence])
            except ValueError as err:
                problem = str(err)
        found.append(Block(doc, fence, language, "\n".join(body), directive, problem))
    return found


def block_problems(block: Block) -> list[str]:
    """What is wrong with a block's language tag or directive."""
    if block.problem:
        return [f"{block.where}: bad doc-test directive: {block.problem}"]
    if not block.language:
        return [f"{block.where}: a block without a language: tag it (```bash for commands, ```text for output or "
                "layouts, ...)"]
    directive = block.directive
    if block.is_command:
        if directive is None or directive.kind == "output":
            return [f"{block.where}: a {block.language} block without a doc-test directive: put "
                    "`<!-- doc-test: run; ... -->` (with the substitutions of its tiny form) or "
                    "`<!-- doc-test: skip (REASON) -->` on the line before it (tests/doc_blocks.py)"]
        if directive.kind == "covered":
            return covered_problems(block)
        return []
    if directive is not None and directive.kind != "output":
        return [f"{block.where}: a {block.language} block is not run: only `output of ...` applies to it"]
    if block.language == "json":
        try:
            json.loads(block.text)
        except ValueError as err:
            return [f"{block.where}: not valid JSON: {err}"]
    return []


def covered_problems(block: Block) -> list[str]:
    """A `covered by` block: its test files exist, and each of its commands is run there: a test file it runs is
    one of them, and one of them names a script it runs by its path or calls a tool's main()."""
    files = block.directive.reason.split()
    missing = [name for name in files if not name.startswith("tests/test_") or not (REPO / name).is_file()]
    if missing:
        return [f"{block.where}: covered by {', '.join(missing)}: no such test file"]
    sources = "".join((REPO / name).read_text() for name in files)

    def covered(path: str) -> bool:
        if path.startswith("tests/"):
            return path in files
        return path in sources or (path.startswith("tools/") and f"{Path(path).stem}.main(" in sources)

    problems = []
    for command in logical_lines(block.text):
        ran = re.findall(r"(?:scripts|tools|tests)/[\w/]+\.(?:sh|py)", command)
        if not ran or not all(covered(path) for path in ran):
            problems.append(f"{block.where}: `{command}` is run by none of {', '.join(files)}")
    return problems


def logical_lines(text: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in (strip_comment(line).strip() for line in joined.split("\n")) if line]


def strip_comment(line: str) -> str:
    """`line` without a `#` comment (one that starts a word outside quotes)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


# ---------------------------------------------------------------------------------------------------------------
# The names the docs use
# ---------------------------------------------------------------------------------------------------------------
PATH = re.compile(r"(?<![\w/.~$-])((?:scripts|configs|tools|docs|trainers|datasets|dassl|clip|tests|templates)/"
                  r"(?:[\w.+*<>-]|\{[^}\s]*\}|/)*|train\.py|gpt_query\.py)")
TEST_REFERENCE = re.compile(r"(?<![\w/])(?:tests/)?(test_\w+\.py)|::(test_\w+)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CONFIG_KEY = re.compile(r"(?<![\w.])(?:TRAINER|DATASET|OPTIM|MODEL|INPUT|DATALOADER|TRAIN|TEST|FEATURE_CACHE)"
                        r"(?:\.[A-Z][A-Z0-9_]*)+(?![\w])")
UNKNOWN = re.compile(r"<!--\s*doc-test:\s*unknown\s(.*?)-->", re.DOTALL)
PROGRAM = re.compile(r"(?<![\w/])(tools/\w+\.py|train\.py|gpt_query\.py|torchrun)(?![\w.])")


def name_problems(doc: str, text: str) -> list[str]:
    """Paths, test references, links, config keys, documented defaults and tool flags of a page that do not
    exist; commands of an `*_ATP` trainer without ATPrompt's switch."""
    unknown = {name for names in UNKNOWN.findall(text) for name in re.sub(r"\(.*\)", "", names).split()}
    problems = [f"{doc}: {name} is declared unknown but exists" for name in sorted(unknown) if key_exists(name)
                or path_exists(name)]
    for number, line in enumerate(text.split("\n"), 1):
        where = f"{doc}:{number}"
        problems += [f"{where}: no {path} in the repository" for path in PATH.findall(line)
                     if path not in unknown and not path_exists(path)]
        problems += [f"{where}: {problem}" for problem in reference_problems(line)]
        problems += [f"{where}: {problem}" for problem in link_problems(doc, line)]
        problems += [f"{where}: no config key {key}" for key in CONFIG_KEY.findall(line)
                     if key not in unknown and not key_exists(key)]
    problems += default_problems(doc, text)
    for where, command, in_block in commands(doc, text):
        problems += [f"{where}: {problem}" for problem in command_problems(command, in_block)]
    return problems


def path_exists(path: str) -> bool:
    """Whether a path the docs name exists; `{a,b}` means each, `*` a glob; placeholders (`<method>`, `...`) and the
    end of a sentence are not part of it."""
    path = path.rstrip(".")
    if "<" in path or "..." in path or path.endswith("/."):
        return True
    return all(glob.glob(str(REPO / expanded)) for expanded in brace_expansions(path))


def brace_expansions(text: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    return [expanded for option in match.group(1).split(",")
            for expanded in brace_expansions(text[:match.start()] + option + text[match.end():])]


def reference_problems(line: str) -> list[str]:
    """`test_x.py` must be a test file and `test_x.py::test_y` (or a later `::test_y` on the line) one of its tests."""
    problems = []
    current = None
    for file, test in TEST_REFERENCE.findall(line):
        if file:
            current = REPO / "tests" / file
            if not current.is_file():
                problems.append(f"no test file tests/{file}")
                current = None
        elif current is not None and not re.search(rf"^def {test}\(", current.read_text(), re.MULTILINE):
            problems.append(f"no test {test} in tests/{current.name}")
    return problems


def link_problems(doc: str, line: str) -> list[str]:
    """Links to local files (and their `#anchors`) that do not resolve."""
    problems = []
    for target in LINK.findall(line):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (REPO / doc).parent / path if path else REPO / doc
        if not file.exists():
            problems.append(f"the link to {target} names no file")
        elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file):
            problems.append(f"the link to {target} names no heading of {file.name}")
    return problems


def heading_anchors(file: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^\s*```.*?^\s*```", "", file.read_text(), flags=re.MULTILINE | re.DOTALL)  # comments in code
    headings = re.findall(r"^#+\s+(.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@functools.cache
def default_config():
    """The merged default config of train.py, with every method's node."""
    import trainers  # noqa: F401  (registers the methods, whose nodes the config holds)
    from trainers.config import get_cfg

    return get_cfg()


def key_exists(key: str) -> bool:
    """A key or node of the default config, or a key of the original's that the project maps or accepts."""
    from trainers.original import IGNORED_KEYS, ORIGINAL_KEYS

    return (config_value(key) is not None or key in IGNORED_KEYS
            or any(key in keys for keys in ORIGINAL_KEYS.values()))


def default_problems(doc: str, text: str) -> list[str]:
    """Table rows that name config keys (first column) in a table with a `default` column, whose default differs
    from the config's."""
    problems = []
    column = None
    for number, line in enumerate(text.split("\n"), 1):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            column = None
        elif "default" in cells:
            column = cells.index("default")
        elif column is not None and len(cells) > column:
            keys = re.findall(r"`([A-Z_]+(?:\.[A-Z0-9_]+)+)`", cells[0])
            values = [value.strip().strip("`") for value in cells[column].split(" / ")]
            for key, value in zip(keys, values if len(values) == len(keys) else [cells[column].strip("`")]):
                actual = config_value(key)
                if actual is not None and not same_value(value, actual):
                    problems.append(f"{doc}:{number}: {key}'s default is {actual!r}, not {value}")
    return problems


def config_value(key: str) -> object:
    """The default value (or node) at `key`; None for a key the config lacks."""
    try:
        return get_key(default_config(), key)
    except KeyError:
        return None


def same_value(documented: str, actual: object) -> bool:
    """Whether a default as a table writes it ("0.02", "(0.5, 0.999)", "[]", "fp32") is the config's value (yacs
    keeps a yaml list as a tuple or a list)."""
    try:
        value = ast.literal_eval(documented)
    except (ValueError, SyntaxError):
        return documented == str(actual)
    return value == actual or (isinstance(actual, (list, tuple)) and tuple(value) == tuple(actual))


def commands(doc: str, text: str) -> list[tuple[str, str, bool]]:
    """Every command of a page: where it is, its text, and whether it is a line of a shell block (else inline code,
    which may span lines)."""
    found = []
    for block in blocks(doc, text):
        if block.language in ("bash", "sh", "shell", "console"):
            found += [(block.where, line, True) for line in logical_lines(block.text)]
    # Fenced blocks become blank lines, so that inline code keeps its line numbers.
    prose = re.sub(r"^\s*```.*?^\s*```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.MULTILINE | re.DOTALL)
    for match in re.finditer(r"`([^`]+)`", prose):
        found.append((f"{doc}:{prose.count(chr(10), 0, match.start()) + 1}", " ".join(match.group(1).split()), False))
    return found


def command_problems(command: str, in_block: bool = True) -> list[str]:
    """The flags of each program in `command` that its parser does not have; in a block, an `*_ATP` trainer without
    ATPrompt's switch (the original's names turn ATPrompt on only with it: the run would train the method alone)."""
    problems = []
    found = list(PROGRAM.finditer(command))
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(command)
        arguments = re.split(r"\s[|>;]\s", command[match.end():end])[0]
        options = program_options(match.group(1))
        if options is None:
            continue
        for flag in re.findall(r"(?<![\w-])(--[a-zA-Z][\w-]*)", arguments):
            if flag not in options:
                problems.append(f"{match.group(1)} has no option {flag}")
    trainer = re.search(r"--trainer (\w+_ATP)\b", command)
    if in_block and trainer and "TRAINER.ATPROMPT.USE_ATPROMPT True" not in command:
        problems.append(f"--trainer {trainer.group(1)} without TRAINER.ATPROMPT.USE_ATPROMPT True runs the method "
                        "alone")
    return problems


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


@functools.cache
def program_options(program: str) -> frozenset[str] | None:
    """The option strings of a program's argparse parser, taken from its main() as it starts parsing; None for a
    program without one (tools/run_protocol.py takes a script and its arguments)."""
    if program in ("torchrun", "tools/torchrun.py"):  # the latter takes torchrun's arguments
        from torch.distributed.run import get_args_parser

        return frozenset(get_args_parser()._option_string_actions)
    module = importlib.import_module(program.removesuffix(".py").replace("/", "."))

    def capture(parser, *args, **kwargs):
        raise _Parsed(parser)

    try:
        with (mock.patch.object(argparse.ArgumentParser, "parse_args", capture),
              mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture),
              contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())):
            module.main([])
    except _Parsed as parsed:
        return frozenset(parsed.parser._option_string_actions)
    except Exception:  # noqa: BLE001  (a main() that parses no arguments fails its own way)
        return None
    return None


def problems(doc: str, text: str) -> list[str]:
    """Everything wrong with the page `doc` (its path in the repository) whose text is `text`: its blocks' tags and
    directives, and the names it uses."""
    return [problem for block in blocks(doc, text) for problem in block_problems(block)] + name_problems(doc, text)
