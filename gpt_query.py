#!/usr/bin/env python3
"""Ask an LLM for the attribute bases of a dataset (step 1 of the ATPrompt attribute search).

Two chat requests, as in the paper: the model first describes every class in one sentence, then condenses
those descriptions into N general, independent attributes, each a single lowercase noun. The answer is
written to a JSON file, and the command that searches over the attributes is printed.

With --descriptions it writes instead the targets of AnchorOPT's anchor pretraining: N sentences describing
each class, as one `{class name: [sentence, ...]}` JSON object. One request per class; the file is saved after
every class, and a rerun asks only for the classes it still lacks.

The API key is read only from the OPENAI_API_KEY environment variable; it is never printed or written.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import openai

DEFAULT_BASE_URL = "https://api.openai.com/v1"
WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
# Status codes worth another try: the service is busy or failing, not rejecting the request itself.
TRANSIENT_STATUS = {408, 409, 429}
# The original's longest description has 236 characters; a longer answer is a paragraph, not one sentence.
MAX_DESCRIPTION_CHARS = 300
LIST_MARKER = re.compile(r"(\d+[.)]|[-*\u2022])\s")
DESCRIPTIONS_INDENT = 4  # as in the original's description files
T = TypeVar("T")


class QueryError(RuntimeError):
    """A failure the user can act on; main() prints it as one line and exits with status 2, like train.py."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ask an LLM for the attribute bases of a dataset (ATPrompt) or for per-class descriptions "
        "(AnchorOPT, --descriptions)."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--classes", nargs="+", metavar="NAME", help="the class names")
    source.add_argument(
        "--classes-file", "--classnames", metavar="FILE", help="a text file with one class name per line"
    )
    source.add_argument(
        "--split-file", metavar="JSON", help="a split_zhou_*.json file; its [path, label, class name] entries name them"
    )
    source.add_argument("--dataset-config-file", metavar="YAML", help="configs/datasets/<name>.yaml (needs --root)")
    parser.add_argument("--root", metavar="DATA_ROOT", help="dataset root folder, for --dataset-config-file")
    parser.add_argument("--model", default="gpt-4o", help="chat model (default: gpt-4o)")
    parser.add_argument(
        "--base-url", help=f"OpenAI-compatible API address (default: $OPENAI_BASE_URL, else {DEFAULT_BASE_URL})"
    )
    parser.add_argument(
        "--descriptions",
        action="store_true",
        help="write N descriptions per class for AnchorOPT's anchor pretraining instead of attribute bases",
    )
    parser.add_argument(
        "--per-class", type=int, default=20, help="descriptions per class, with --descriptions (default: 20)"
    )
    parser.add_argument("--num-attributes", type=int, default=5, help="number of attribute bases (default: 5)")
    parser.add_argument("--chunk-size", type=int, default=100, help="classes per description request (default: 100)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one answer (default: 120)")
    parser.add_argument(
        "--retries", type=int, default=3, help="extra tries after a failed request or an unusable answer (default: 3)"
    )
    parser.add_argument(
        "--backoff", type=float, default=2.0, help="seconds before the first retry; doubles after each (default: 2)"
    )
    parser.add_argument(
        "--output",
        help='JSON file to write (default: output/attributes/<dataset or "classes">.json, or output/descriptions/...'
        " with --descriptions); with --descriptions an existing file is completed, not replaced",
    )
    args = parser.parse_args(argv)
    if args.dataset_config_file and not args.root:
        parser.error("--dataset-config-file needs --root DATA_ROOT")
    for name in ("num_attributes", "chunk_size", "timeout", "per_class"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.retries < 0 or args.backoff < 0:
        parser.error("--retries and --backoff must not be negative")
    return args


def dataset_classnames(config_file: str, root: str) -> list[str]:
    """Class names of a benchmark, read through the same dataset readers as training."""
    if not Path(config_file).is_file():
        raise QueryError(f"dataset config {config_file} not found: pass one of configs/datasets/*.yaml")
    # Imported here so the other class-name sources work without torch and the dataset readers.
    import datasets  # noqa: F401  (registers the benchmark readers)
    from dassl.config import get_cfg_default
    from dassl.data.datasets import build_dataset
    from dassl.utils.errors import UserError

    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # every class, not the base or new half
    try:
        cfg.merge_from_file(config_file)
        cfg.DATASET.ROOT = root
        cfg.DATASET.NUM_SHOTS = -1  # names need no few-shot sampling, which would also write a cache under ROOT
        return list(build_dataset(cfg).classnames)
    except (OSError, ValueError, KeyError, UserError) as err:
        raise QueryError(f"cannot read the class names of {config_file} under {root}: {err}") from err


def split_classnames(split_file: str) -> list[str]:
    """Class names of a split file in label order, from its train, val and test entries together."""
    # Imported here for the same reason as in dataset_classnames; the reader's checks give the error messages.
    from dassl.data.datasets import DatasetBase
    from dassl.utils.errors import UserError
    from datasets.splits import read_split

    try:
        train, val, test = read_split(split_file, "")
    except (OSError, UserError) as err:
        raise QueryError(f"cannot read the class names of --split-file {split_file}: {err}") from err
    return DatasetBase.get_lab2cname(train + val + test)[1]


def load_classnames(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The class names (underscores read as spaces) and the dataset name, if known."""
    dataset = None
    if args.classes:
        names = args.classes
    elif args.classes_file:
        try:
            names = Path(args.classes_file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise QueryError(f"cannot read --classes-file {args.classes_file}: {err.strerror}") from err
    elif args.split_file:
        names = split_classnames(args.split_file)
    else:
        names = dataset_classnames(args.dataset_config_file, args.root)
        dataset = Path(args.dataset_config_file).stem
    # The spelling trainers/prompting.py's clean_classname puts into prompts (importing it would need torch).
    names = [name.replace("_", " ").strip() for name in names]
    names = [name for name in names if name]
    if not names:
        raise QueryError("no class names given: the list or file is empty")
    return names, dataset


def first_json_object(text: str) -> dict | None:
    """The first JSON object in free text; models often wrap it in prose or code fences."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def parse_attributes(text: str, n: int) -> list[str]:
    """Exactly n distinct single lowercase words from a `{"attributes": [...]}` answer, else ValueError."""
    obj = first_json_object(text)
    if obj is None or not isinstance(obj.get("attributes"), list):
        raise ValueError('no JSON object with an "attributes" list')
    words = [w.strip().lower() if isinstance(w, str) else w for w in obj["attributes"]]
    bad = [w for w in words if not isinstance(w, str) or not WORD.fullmatch(w)]
    if bad:
        raise ValueError(f"not single words: {bad}")
    if len(set(words)) != len(words):
        raise ValueError(f"repeated words: {words}")
    if len(words) != n:
        raise ValueError(f"{len(words)} attributes instead of {n}: {words}")
    return words


def non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("the answer was empty")
    return text.strip()


def description_prompt(names: list[str]) -> str:
    listing = "\n".join(f"- {name}" for name in names)
    return (
        f"Here are {len(names)} categories from an image classification dataset:\n{listing}\n\n"
        "Describe each category in one sentence that says what it is and what sets it apart: for example its "
        "shape, color, size, material, habits or function. Write one line per category, as `category: sentence`, "
        "and nothing else."
    )


def attribute_prompt(descriptions: str, n: int) -> str:
    return (
        "Here are one-sentence descriptions of the categories of an image classification dataset:\n\n"
        f"{descriptions}\n\n"
        f"From these descriptions, summarise {n} general attributes that best tell the categories apart. The "
        "attributes must be independent of one another and apply to every category, and each must be a single "
        "lowercase English noun, such as color or shape. Answer with a JSON object only, in the form "
        f'{{"attributes": ["...", ...]}}, holding exactly {n} words.'
    )


def descriptions_prompt(name: str, n: int) -> str:
    return (
        f'Write {n} different sentences that describe what a "{name}" from an image classification dataset looks '
        "like, as it would be seen in a photo: its shape, color, size, parts, texture or typical surroundings. "
        f"Each sentence stands on its own, names the {name}, and is at most {MAX_DESCRIPTION_CHARS} characters "
        f'long. Answer with a JSON object only, in the form {{"descriptions": ["...", ...]}}, holding {n} sentences.'
    )


def description_problem(item: object, seen: set[str]) -> str | None:
    """Why one entry of an answer is not a usable description (None when it is); `seen`: the kept ones, lowercase."""
    if not isinstance(item, str) or not item.strip():
        return "empty or not text"
    text = item.strip()
    # A line break or a list marker means the model packed a list into one entry.
    if "\n" in text or LIST_MARKER.match(text):
        return "more than one description in an entry"
    if len(text) > MAX_DESCRIPTION_CHARS:
        return f"longer than {MAX_DESCRIPTION_CHARS} characters"
    if text.lower() in seen:
        return "repeated"
    return None


def parse_descriptions(text: str, n: int) -> list[str]:
    """The first n usable sentences of a `{"descriptions": [...]}` answer, else ValueError."""
    obj = first_json_object(text)
    if obj is None or not isinstance(obj.get("descriptions"), list):
        raise ValueError('no JSON object with a "descriptions" list')
    kept: list[str] = []
    seen: set[str] = set()
    problems: set[str] = set()
    for item in obj["descriptions"]:
        problem = description_problem(item, seen)
        if problem:
            problems.add(problem)
        else:
            kept.append(item.strip())
            seen.add(item.strip().lower())
    if len(kept) < n:
        rejected = f" (others rejected: {', '.join(sorted(problems))})" if problems else ""
        raise ValueError(f"{len(kept)} usable descriptions instead of {n}{rejected}")
    return kept[:n]


def redact(text: str, key: str) -> str:
    """Server messages can echo the key, whole or masked (`sk-...`, `****abcd`); drop every such form."""
    text = re.sub(r"sk-[\w*.-]+", "sk-***", text.replace(key, "***"))
    return re.sub(r"\S*\*{3,}\S*", "***", text)


def first_choice(response: object) -> object | None:
    """The first choice of a chat-completions answer, None when it has none; ValueError saying what came instead
    when the answer is not the API's JSON (the client hands an HTML page over as text, other JSON unchecked)."""
    if isinstance(response, str):
        raise ValueError(f"a text ({response[:60]!r}...)")
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise ValueError(f"a {type(response).__name__} without a list of choices")
    if not choices:
        return None
    message = getattr(choices[0], "message", None)
    if message is None or not isinstance(getattr(message, "content", None), (str, type(None))):
        raise ValueError("a choice without a text message")
    return choices[0]


@dataclass
class Chat:
    """One chat endpoint with this script's retry policy (the client's own retries are off)."""

    client: openai.OpenAI
    model: str
    base_url: str
    retries: int
    backoff: float

    def complete(self, messages: list[dict], json_mode: bool) -> str:
        """The text of one answer; timeouts, lost connections, 429, 5xx and answers that are not the API's JSON (a
        proxy's HTML page) are retried with exponential backoff."""
        extra = {"response_format": {"type": "json_object"}} if json_mode else {}
        for attempt in range(self.retries + 1):
            try:
                response = self.client.chat.completions.create(model=self.model, messages=messages, **extra)
                choice = first_choice(response)
                break
            except openai.APITimeoutError:
                problem = "the request timed out"
            except openai.APIConnectionError:
                problem = f"cannot connect to {self.base_url}"
            except openai.APIStatusError as err:
                problem = self._check_status(err)
            except ValueError as err:  # also the client's JSONDecodeError for a body that is no JSON at all
                what = f"a body that is no JSON ({err})" if isinstance(err, json.JSONDecodeError) else str(err)
                problem = redact(f"{self.base_url} answered with {what}, not the API's JSON (a proxy's page?)",
                                 self.client.api_key)
            if attempt == self.retries:
                raise QueryError(f"gave up after {attempt + 1} attempts: {problem}; check --base-url and --timeout")
            wait = self.backoff * 2**attempt
            print(f"warning: {problem}; retry {attempt + 1}/{self.retries} in {wait:.3g} s", file=sys.stderr)
            time.sleep(wait)
        if choice is None:
            return ""
        refusal = getattr(choice.message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            raise QueryError(f"{self.model} refused to answer: {refusal or 'blocked by the content filter'}")
        return choice.message.content or ""

    def _check_status(self, err: openai.APIStatusError) -> str:
        """Describe a transient HTTP error, or raise the QueryError for one that another try cannot fix."""
        status = err.status_code
        if status in (401, 403):
            raise QueryError(
                f"the API key in OPENAI_API_KEY was refused by {self.base_url} (HTTP {status}): "
                "check the key and that it belongs to this service (--base-url)"
            ) from None
        if status in TRANSIENT_STATUS or status >= 500:
            return f"{self.base_url} answered HTTP {status}"
        detail = redact(str(err.message), self.client.api_key)
        raise QueryError(
            f"{self.base_url} rejected the request (HTTP {status}: {detail}); check --model ({self.model}) "
            "and --base-url"
        ) from None

    def ask(self, prompt: str, check: Callable[[str], T], correction: str, json_mode: bool = False) -> T:
        """Ask until `check` accepts the answer; an unusable answer is sent back with a short correction."""
        messages = [{"role": "user", "content": prompt}]
        for attempt in range(self.retries + 1):
            text = self.complete(messages, json_mode)
            try:
                return check(text)
            except ValueError as err:
                problem = str(err)
            if attempt < self.retries:
                print(f"warning: unusable answer ({problem}); asking again", file=sys.stderr)
                messages += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": f"That answer cannot be used ({problem}). {correction}"},
                ]
        raise QueryError(f"{self.model} gave no usable answer in {self.retries + 1} attempts; last problem: {problem}")


def propose_attributes(chat: Chat, names: list[str], n: int, chunk_size: int) -> tuple[str, list[str]]:
    """Stage 1: describe the classes (in chunks); stage 2: condense the descriptions into n attributes."""
    parts = []
    for start in range(0, len(names), chunk_size):
        chunk = names[start : start + chunk_size]
        print(f"Describing classes {start + 1}-{start + len(chunk)} of {len(names)} ...", file=sys.stderr)
        parts.append(
            chat.ask(description_prompt(chunk), non_empty, "Describe each category in one sentence, one per line.")
        )
    descriptions = "\n".join(parts)
    print(f"Summarising {n} attributes ...", file=sys.stderr)
    correction = f'Reply with only {{"attributes": [...]}} holding exactly {n} different single lowercase nouns.'
    attributes = chat.ask(attribute_prompt(descriptions, n), lambda text: parse_attributes(text, n), correction, True)
    return descriptions, attributes


def write_json_atomic(path: Path, data: dict, indent: int | None = 2) -> None:
    """Write through a temporary file and rename, so an interrupted run never leaves half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=indent)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise QueryError(f"cannot write {path}: {err.strerror}; choose another --output") from err


def json_indent(text: str) -> int | None:
    """The indent of a JSON file's first nested line, so a rewrite keeps its layout; None for one line."""
    match = re.match(r"\s*\{[ \t]*\r?\n( *)\S", text)
    return len(match.group(1)) if match else None


def load_descriptions(path: Path) -> tuple[dict[str, list[str]], int | None]:
    """The descriptions already in `path` and the file's indent: what a rerun resumes from."""
    if not path.exists():
        return {}, DESCRIPTIONS_INDENT
    refuse = f"--output {path} is not a {{class name: [sentence, ...]}} JSON object"
    hint = "move it away or choose another --output"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except OSError as err:
        raise QueryError(f"cannot read --output {path}: {err.strerror}; {hint}") from err
    except ValueError as err:  # also UnicodeDecodeError
        raise QueryError(f"{refuse} ({err}); {hint}") from err
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
    ):
        raise QueryError(f"{refuse}; {hint}")
    return data, json_indent(text) if data else DESCRIPTIONS_INDENT


def describe_classes(chat: Chat, names: list[str], n: int, output: Path) -> int:
    """Ask for n descriptions of every class that lacks them in `output`, saving after each; returns the count."""
    descriptions, indent = load_descriptions(output)
    todo = [name for name in names if len(descriptions.get(name, [])) < n]
    finished = len(names) - len(todo)
    if finished:
        print(f"{finished} of {len(names)} classes already have {n} descriptions in {output}", file=sys.stderr)
    for i, name in enumerate(todo):
        print(f"Describing {name} ({i + 1}/{len(todo)}) ...", file=sys.stderr)
        correction = f'Reply with only {{"descriptions": [...]}} holding {n} different single sentences about {name}.'
        try:
            descriptions[name] = chat.ask(
                descriptions_prompt(name, n), lambda text: parse_descriptions(text, n), correction, True
            )
        except QueryError as err:
            done = f"{finished + i} of {len(names)} classes are saved in {output}; rerun to resume"
            raise QueryError(f"class {name!r}: {err} ({done})") from err
        write_json_atomic(output, descriptions, indent)
    return len(todo)


def print_result(attributes: list[str], model: str, output: Path, dataset: str | None, root: str | None) -> None:
    words = " ".join(attributes)
    dataset_arg = shlex.quote(dataset) if dataset else "<dataset>"
    root_arg = shlex.quote(root) if root else "<data_root>"
    print(f"Attribute bases from {model}: {', '.join(attributes)}")
    print(f"Saved to {output}")
    print("Search for the best combination of them:")
    print(f'  bash scripts/attribute_search/main.sh {dataset_arg} {root_arg} "{words}"')
    print("or pass them to train.py as:")
    print(f'  TRAINER.ATTRIBUTE_SEARCH.BASES "{attributes!r}"')


def run_attributes(args: argparse.Namespace, chat: Chat, names: list[str], dataset: str | None) -> None:
    descriptions, attributes = propose_attributes(chat, names, args.num_attributes, args.chunk_size)
    output = Path(args.output or f"output/attributes/{dataset or 'classes'}.json")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {
        "model": args.model,
        "base_url": chat.base_url,
        "classes": len(names),
        "descriptions": descriptions,
        "attributes": attributes,
        "created": created,
    }
    write_json_atomic(output, record)
    print_result(attributes, args.model, output, dataset, args.root)


def run_descriptions(args: argparse.Namespace, chat: Chat, names: list[str], dataset: str | None) -> None:
    output = Path(args.output or f"output/descriptions/{dataset or 'classes'}.json")
    names = list(dict.fromkeys(names))  # a repeated name is one key of the file
    asked = describe_classes(chat, names, args.per_class, output)
    print(f"{len(names)} classes with at least {args.per_class} descriptions each in {output} ({asked} asked now)")


def run(args: argparse.Namespace) -> None:
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        raise QueryError("OPENAI_API_KEY is not set: run `export OPENAI_API_KEY=<your key>` first")
    names, dataset = load_classnames(args)
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    client = openai.OpenAI(api_key=key, base_url=base_url, timeout=args.timeout, max_retries=0)
    chat = Chat(client, args.model, base_url, args.retries, args.backoff)
    (run_descriptions if args.descriptions else run_attributes)(args, chat, names, dataset)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except QueryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every described class is already on disk, so only the one in flight is lost.
        print("Interrupted" + ("; rerun the same command to resume" if args.descriptions else ""), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
