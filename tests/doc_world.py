"""Where the docs' commands run in the tests: a folder laid out as a checkout of the repository (its files linked,
fresh `output/` and `templates/`, fake copies of every benchmark under `data/`), and the part of the shell the docs
use, with each command run in this process (tests/doc_blocks.py says how a block declares its tiny form).

Shell: one command per line (`\\` continues it, `#` comments), `NAME=VALUE` (before a command: its environment),
`export`, `$NAME` / `${NAME}`, quotes, and `for NAME in WORDS; do` ... `done`. Commands: `bash scripts/<method>/
<name>.sh ARGS` (tools/run_protocol.py, with train.py in this process), `python[3] tools/<tool>.py ARGS`, `python[3]
train.py ARGS` and `python[3] gpt_query.py ARGS` (their main()), and a python block as a program.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shlex
import subprocess
import traceback
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import fake_datasets
import pytest
from doc_blocks import REPO, Block, logical_lines
from fake_data import image_folder, original_anchor_file
from PIL import Image

import gpt_query
import train
from datasets import catalog
from tools import download_datasets, run_protocol

# The environment the run scripts and tools read: a block sets what it needs, nothing comes from the caller's.
SCRIPT_ENV = ("EPO", "NCTX", "WEIGHT", "CFG", "SHOTS", "OUTPUT", "EXTRA_OPTS", "DATA", "ANCHOR", "FORCE", "DRY_RUN",
              "LAUNCH", "PYTHON", "FEATURE_CACHE", "OPENAI_API_KEY", "OPENAI_BASE_URL")
# What the stand-in chat model proposes as attribute bases: the paper's for Caltech101.
STAND_IN_ATTRIBUTES = ["shape", "color", "material", "function", "size"]
GIVEN_CLASSES = ["golden_retriever", "tabby_cat", "red_fox", "sea_lion"]


def make_data(root: Path) -> Path:
    """A fake copy of every benchmark and ImageNet variant under `root`, each with the split file its reader makes
    (what the authors' zips hold)."""
    for info in catalog.DATASETS:
        if info.role in ("benchmark", "variant"):
            getattr(fake_datasets, info.key)(root)
            download_datasets.open_dataset(str(root), info)
    return root


def make_checkout(folder: Path, data: Path) -> Path:
    """`folder` as a user's checkout: the repository's files linked, its own `templates/` (files linked, so a
    description file a block writes stays here), `data/` and a home folder for the caches."""
    for entry in REPO.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("templates", "output", "data"):
            (folder / entry.name).symlink_to(entry)
    (folder / "templates").mkdir()
    for entry in (REPO / "templates").iterdir():
        (folder / "templates" / entry.name).symlink_to(entry)
    (folder / "data").symlink_to(data)
    (folder / "home").mkdir()
    return folder


def give(path: Path) -> None:
    """A file a user brings (doc_blocks: `given`), unless an earlier block of the page brought it."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".pth.tar"):
        original_anchor_file(path)  # of the tiny CLIP's text width
    elif path.suffix == ".txt":
        path.write_text("".join(f"{name}\n" for name in GIVEN_CLASSES))
    elif path.suffix in (".jpg", ".png"):
        Image.new("RGB", (32, 32), (90, 140, 40)).save(path)
    else:
        image_folder(path, GIVEN_CLASSES)


def stand_in_answer(chat: gpt_query.Chat, messages: list[dict], json_mode: bool) -> str:
    """What a chat model answers gpt_query.py's requests with: descriptions, the attribute bases, or sentences."""
    prompt = messages[0]["content"]
    if '{"attributes"' in prompt:
        count = int(re.search(r"holding exactly (\d+) words", prompt).group(1))
        return json.dumps({"attributes": STAND_IN_ATTRIBUTES[:count]})
    if '{"descriptions"' in prompt:
        count = int(re.search(r"Write (\d+) different sentences", prompt).group(1))
        name = re.search(r'describe what a "(.+?)" from', prompt).group(1)
        return json.dumps({"descriptions": [f"a photo of a {name}, seen from side {i}." for i in range(count)]})
    names = re.findall(r"^- (.+)$", prompt, re.MULTILINE)
    return "\n".join(f"{name}: a thing called {name}." for name in names)


@dataclass
class Ran:
    """A command as it ran: its line (after the block's replacements), exit status and output."""

    command: str
    code: int
    output: str


class Shell:
    """Runs the lines of a block (tests/doc_blocks.py) in the checkout, in this process; `read_output` returns
    what was printed since it was last called."""

    def __init__(self, read_output: Callable[[], str]):
        self.read_output = read_output
        self.variables: dict[str, str] = {}
        self.exported: set[str] = set()
        self.llm = False

    def run(self, text: str, env: dict[str, str] | None = None) -> list[Ran]:
        """Run `text` (shell lines) with `env` exported for it; every command's exit status and output."""
        env = env or {}
        before = {name: self.variables.get(name) for name in env}
        was_exported = self.exported & set(env)
        self.variables.update(env)
        self.exported |= set(env)
        try:
            return self.lines(logical_lines(text))
        finally:
            restore(self.variables, before)
            self.exported = (self.exported - set(env)) | was_exported

    def lines(self, lines: list[str]) -> list[Ran]:
        ran = []
        while lines:
            line, lines = lines[0], lines[1:]
            loop = re.fullmatch(r"for (\w+) in (.*); do", line)
            if loop:
                depth, body = 1, []
                while depth:
                    inner, lines = lines[0], lines[1:]
                    depth += inner.startswith("for ") - (inner == "done")
                    body.append(inner)
                for word in shlex.split(self.expand(loop.group(2))):
                    self.variables[loop.group(1)] = word
                    ran += self.lines(body[:-1])
            else:
                ran += self.command(line)
        return ran

    def expand(self, text: str) -> str:
        """`$NAME` and `${NAME}` outside single quotes; in double quotes the value stays one word."""
        out, quote, i = [], "", 0
        while i < len(text):
            char = text[i]
            match = re.match(r"\$(?:\{(\w+)\}|(\w+))", text[i:]) if quote != "'" else None
            if match:
                value = self.variables.get(match.group(1) or match.group(2))
                value = os.environ.get(match.group(1) or match.group(2), "") if value is None else value
                out.append(re.sub(r'(["\\$`])', r"\\\1", value) if quote == '"' else value)
                i += match.end()
                continue
            if char in "'\"" and quote in ("", char):
                quote = "" if quote else char
            out.append(char)
            i += 1
        return "".join(out)

    def command(self, line: str) -> list[Ran]:
        words = shlex.split(self.expand(line))
        if words[0] == "export":
            words = words[1:]
            self.exported |= {word.split("=", 1)[0] for word in words}
        assignments = {}
        while words and re.fullmatch(r"\w+=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            assignments[name] = value
        if not words:  # NAME=VALUE alone: a shell variable (exported if it was)
            self.variables.update(assignments)
            return []
        env = {name: self.variables[name] for name in self.exported if name in self.variables} | assignments
        self.read_output()
        try:
            main, args = self.main_of(words)
        except NotImplementedError as unknown:  # as a shell's "command not found"
            return [Ran(line, 127, str(unknown))]
        with environment(env):
            code = self.execute(main, args)
        return [Ran(line, code, self.read_output())]

    def python(self, code: str) -> Ran:
        """A python block, as `python` would run it from the checkout."""
        self.read_output()
        status = self.execute(lambda _: exec(compile(code, "<doc block>", "exec"), {"__name__": "__main__"}), [])
        return Ran(code, status, self.read_output())

    @staticmethod
    def execute(main: Callable, args: list[str]) -> int:
        """Run one command; its exit status (an exception is status 1, with its traceback in the output)."""
        try:
            return status(main(args))
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except Exception:  # noqa: BLE001  (a crash is a failed command: its traceback is the output to read)
            print(traceback.format_exc())
            return 1

    def main_of(self, words: list[str]) -> tuple[Callable, list[str]]:
        """The function that runs a command in this process, and its arguments."""
        program, script, args = words[0], words[1] if len(words) > 1 else "", words[2:]
        if program == "bash" and re.fullmatch(r"scripts/\w+/\w+\.sh", script):
            return run_protocol.main, [str(Path(script).resolve()), *args]
        if program in ("python", "python3") and script == "train.py":
            return train.main, args
        if program in ("python", "python3") and script == "gpt_query.py":
            if not self.llm:
                raise NotImplementedError("gpt_query.py asks an API: give its block the `llm` clause")
            return gpt_query.main, args
        tool = re.fullmatch(r"tools/(\w+)\.py", script)
        if program in ("python", "python3") and tool:
            return importlib.import_module(f"tools.{tool.group(1)}").main, args
        raise NotImplementedError(f"`{shlex.join(words)}` cannot run in the tests: mark its block "
                                  "`<!-- doc-test: skip (REASON) -->`, or `covered by` the test that runs it")


def status(result: object) -> int:
    """A main()'s exit status: its int, else 0 (some tools return their results)."""
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        restore(os.environ, saved)


def restore(variables: MutableMapping[str, str], saved: dict[str, str | None]) -> None:
    """Put back the values `saved` held before a change (None: the name was unset)."""
    for name, value in saved.items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value


NUMBER = r"\d+(?:\.\d+)?"


def line_pattern(line: str, vary: list[str]) -> re.Pattern:
    """A documented output line as a pattern: numbers match any number; `...` and the `vary` texts any text."""
    free = [re.escape(text) for text in sorted(vary, key=len, reverse=True)] + [r"\.\.\.", NUMBER]
    parts = re.split(f"({'|'.join(free)})", line.strip())  # odd places: the free parts
    return re.compile("".join(re.escape(part) if i % 2 == 0 else NUMBER if re.fullmatch(NUMBER, part) else ".*?"
                              for i, part in enumerate(parts)))


def missing_line(expected: str, output: str, vary: list[str], whole: bool = False) -> str | None:
    """The first line of `expected` (but `...` lines) that `output` lacks, in order (`whole`: line for line, and
    nothing more); None when all are there."""
    printed = [line.strip() for line in output.splitlines() if line.strip()]
    lines = iter(printed)
    shown = [line for line in expected.splitlines() if line.strip() not in ("", "...")]
    for line in shown:
        pattern = line_pattern(line, vary)
        if not any(pattern.fullmatch(candidate) for candidate in lines):
            return line
    if whole and len(printed) > len(shown):
        return f"(the end: it printed {len(printed) - len(shown)} more lines, from '{printed[len(shown)]}')"
    return None


class DocRun:
    """A page's blocks run in order in one checkout, as a user would paste them into one shell."""

    def __init__(self, checkout: Path, monkeypatch: pytest.MonkeyPatch, read_output: Callable[[], str]):
        monkeypatch.chdir(checkout)
        for name in SCRIPT_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(checkout / "home"))  # the caches (~/.cache/...) stay in the checkout
        # train.py runs in this process, as the scripts would start it.
        in_process = SimpleNamespace(run=lambda command: subprocess.CompletedProcess(command, train.main(command[2:])))
        monkeypatch.setattr(run_protocol, "subprocess", in_process)
        monkeypatch.setattr(gpt_query.Chat, "complete", stand_in_answer)
        self.checkout = checkout
        self.shell = Shell(read_output)
        self.ran: list[tuple[Block, Ran]] = []

    def block(self, block: Block) -> list[str]:
        """Run a `run` block or check an output block; what went wrong, each with its place."""
        directive = block.directive
        if directive.kind == "output":
            return self.output(block)
        for path in directive.given:
            give(self.checkout / path)
        self.shell.llm = directive.llm
        # A user of an LLM has its key; the stand-in takes any.
        env = {"OPENAI_API_KEY": "sk-stand-in", **directive.env} if directive.llm else directive.env
        for command in directive.first:
            failed = [ran for ran in self.shell.run(command, env) if ran.code]
            if failed:
                return [f"{block.where}: its `first` command `{failed[0].command}` failed:\n{tail(failed[0])}"]
        text = directive.apply(block.text)
        ran = [self.shell.python(text)] if block.language == "python" else self.shell.run(text, env)
        self.ran += [(block, one) for one in ran]
        failures = [f"{block.where}: `{one.command}` ended with status {one.code}:\n{tail(one)}"
                    for one in ran if one.code]
        output = "\n".join(one.output for one in ran)
        for text in directive.expect:
            if missing_line(directive.apply(text), output, []):
                failures.append(f"{block.where}: its output lacks a line like '{text}':\n{tail(ran[-1])}")
        return failures

    def output(self, block: Block) -> list[str]:
        """An output block against the output of the last command that begins as it says (with the replacements of
        that command's block)."""
        directive = block.directive
        found = [(source, ran) for source, ran in self.ran
                 if ran.command.startswith(source.directive.apply(directive.output_of))]
        if not found:
            return [f"{block.where}: no command of an earlier block begins with `{directive.output_of}`"]
        source, ran = found[-1]
        line = missing_line(source.directive.apply(block.text), ran.output,
                            [source.directive.apply(text) for text in directive.vary], directive.whole)
        return [f"{block.where}: `{ran.command}` printed no line like '{line}':\n{tail(ran)}"] if line else []


def tail(ran: Ran, lines: int = 12) -> str:
    """The end of a command's output, where its error is."""
    return "\n".join(ran.output.rstrip().splitlines()[-lines:])
