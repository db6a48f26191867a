"""gpt_query.py against a local fake of the chat-completions API (no network, no real key)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import gpt_query

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-SECRETKEY0123456789abcdef"
CLASSES = ["golden retriever", "tabby_cat", "red fox"]
GOOD = '{"attributes": ["color", "size", "shape", "habitat", "behavior"]}'
DESCRIPTIONS = "golden retriever: a friendly dog.\ntabby cat: a striped cat.\nred fox: a wild canine."


def ok(content, refusal=None, delay=0.0):
    message = {"role": "assistant", "content": content, "refusal": refusal}
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return {"status": 200, "body": body, "delay": delay}


def error(status, message):
    return {"status": status, "body": {"error": {"message": message, "type": "error", "code": None}}, "delay": 0.0}


def raw(body: bytes, content_type: str):
    """A 200 answer whose body is not the API's JSON, e.g. a proxy's HTML page."""
    return {"status": 200, "raw": body, "type": content_type, "delay": 0.0}


class FakeChatServer(ThreadingHTTPServer):
    """Serves the scripted replies in order (the last one repeats) and records every request."""

    daemon_threads = True
    block_on_close = False  # a reply still sleeping after the client timed out must not delay teardown

    def __init__(self, replies):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.replies = list(replies)
        self.requests = []
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ChatHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            replies = self.server.replies
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if self.path != "/v1/chat/completions":
            reply = error(404, f"no route {self.path}")
        time.sleep(reply["delay"])
        data = reply["raw"] if "raw" in reply else json.dumps(reply["body"]).encode()
        try:
            self.send_response(reply["status"])
            self.send_header("Content-Type", reply.get("type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(*replies):
        server = FakeChatServer(replies)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def query(tmp_path, monkeypatch, capsys):
    """Run main() in-process; returns (exit code, stdout + stderr, output path)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    output = tmp_path / "attributes.json"

    def run(server, *extra, source=("--classes", *CLASSES), to=output):
        argv = [*source, "--base-url", server.url, "--backoff", "0.01", *extra]
        argv += ["--output", str(to)] if to else []
        code = gpt_query.main(argv)
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert "SECRETKEY" not in text
        return code, text, output

    return run


def test_two_stages_write_attributes_and_print_the_search_command(serve, query, caplog):
    caplog.set_level("DEBUG")
    server = serve(ok(DESCRIPTIONS), ok(GOOD))
    code, text, output = query(server)
    assert code == 0
    record = json.loads(output.read_text())
    assert record["attributes"] == ["color", "size", "shape", "habitat", "behavior"]
    assert record["classes"] == 3 and record["model"] == "gpt-4o" and record["base_url"] == server.url
    assert record["descriptions"] == DESCRIPTIONS and record["created"]
    assert "SECRETKEY" not in output.read_text() and "SECRETKEY" not in caplog.text
    assert 'bash scripts/attribute_search/main.sh <dataset> <data_root> "color size shape habitat behavior"' in text
    assert "TRAINER.ATTRIBUTE_SEARCH.BASES \"['color', 'size', 'shape', 'habitat', 'behavior']\"" in text

    stage1, stage2 = server.requests
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
    assert stage1["body"]["model"] == "gpt-4o"
    assert "tabby cat" in stage1["body"]["messages"][0]["content"]  # underscores read as spaces
    assert DESCRIPTIONS in stage2["body"]["messages"][0]["content"]
    assert stage2["body"]["response_format"] == {"type": "json_object"}
    assert "response_format" not in stage1["body"]
    assert not list(output.parent.glob(".*tmp"))  # the atomic write left no temporary file


def test_long_class_lists_are_described_in_chunks(serve, query, tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("a\nb\n\nc\nd\ne\n")
    server = serve(ok("a: x\nb: y"), ok("c: z\nd: w"), ok("e: v"), ok(GOOD))
    code, _, output = query(server, "--chunk-size", "2", "--model", "tiny", source=("--classes-file", str(names)))
    assert code == 0
    assert len(server.requests) == 4
    assert [r["body"]["model"] for r in server.requests] == ["tiny"] * 4
    assert json.loads(output.read_text())["descriptions"] == "a: x\nb: y\nc: z\nd: w\ne: v"
    assert "a: x\nb: y\nc: z\nd: w\ne: v" in server.requests[3]["body"]["messages"][0]["content"]


def test_class_names_from_a_dataset_config(serve, query, tmp_path, monkeypatch):
    """The benchmark reader supplies the names; the default output is named after the dataset config."""
    root = tmp_path / "data"
    entries = []
    for label, name in enumerate(["dollar_bill", "face", "leopard"]):
        image = root / "caltech-101" / "101_ObjectCategories" / name / "image_0001.jpg"
        image.parent.mkdir(parents=True)
        image.touch()  # the reader only checks that the files exist
        entries.append([f"{name}/image_0001.jpg", label, name])
    split = {"train": entries, "val": entries, "test": entries}
    (root / "caltech-101" / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "datasets" / "caltech101.yaml")
    server = serve(ok(DESCRIPTIONS), ok(GOOD))
    code, text, _ = query(server, source=("--dataset-config-file", config, "--root", str(root)), to=None)
    assert code == 0
    record = json.loads((tmp_path / "output" / "attributes" / "caltech101.json").read_text())
    assert record["classes"] == 3 and len(record["attributes"]) == 5
    assert "- dollar bill\n- face\n- leopard" in server.requests[0]["body"]["messages"][0]["content"]
    assert f'main.sh caltech101 {root} "color size shape habitat behavior"' in text
    assert not (root / "caltech-101" / "split_fewshot").exists()  # no few-shot cache written for the names


def test_class_names_from_a_split_file_in_label_order(serve, query, tmp_path):
    split = tmp_path / "split_zhou_Test.json"
    entries = [["b/1.jpg", 1, "sea_horse"], ["a/1.jpg", 0, "yin_yang"]]
    split.write_text(json.dumps({"train": entries, "val": [], "test": [["c/1.jpg", 2, "face"], entries[0]]}))
    server = serve(ok(DESCRIPTIONS), ok(GOOD))
    code, _, output = query(server, source=("--split-file", str(split)))
    assert code == 0 and json.loads(output.read_text())["classes"] == 3
    assert "- yin yang\n- sea horse\n- face\n" in server.requests[0]["body"]["messages"][0]["content"]


def test_missing_dataset_is_one_clear_error(serve, query, tmp_path):
    config = str(REPO / "configs" / "datasets" / "caltech101.yaml")
    server = serve(ok(GOOD))
    code, text, _ = query(server, source=("--dataset-config-file", config, "--root", str(tmp_path)))
    assert code == 2 and server.requests == []
    assert "cannot read the class names" in text and "caltech-101" in text and "Traceback" not in text


def test_malformed_attribute_answers_are_corrected_and_retried(serve, query):
    three = '{"attributes": ["color", "size", "shape"]}'
    multi = 'Sure: {"attributes": ["body shape", "color", "size", "habitat", "behavior"]}'
    fenced = '```json\n{"attributes": ["Color", "size", "shape", "habitat", "life-span"]}\n```'
    server = serve(ok(DESCRIPTIONS), ok(three), ok(multi), ok(fenced))
    code, text, output = query(server)
    assert code == 0
    assert json.loads(output.read_text())["attributes"] == ["color", "size", "shape", "habitat", "life-span"]
    assert len(server.requests) == 4 and text.count("unusable answer") == 2
    last = server.requests[3]["body"]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[1]["content"] == three and "3 attributes instead of 5" in last[2]["content"]


def test_gives_up_on_answers_that_stay_malformed(serve, query):
    server = serve(ok(DESCRIPTIONS), ok("I would pick colour and shape."))
    code, text, output = query(server, "--retries", "2")
    assert code == 2 and not output.exists()
    assert len(server.requests) == 1 + 3
    assert "no usable answer in 3 attempts" in text and "attributes" in text


def test_refused_key_is_one_clear_error_without_the_key(serve, query):
    server = serve(error(401, f"Incorrect API key provided: {KEY[:7]}****{KEY[-4:]}."))
    code, text, output = query(server)
    assert code == 2 and not output.exists()
    assert len(server.requests) == 1  # a refused key is not retried
    assert f"refused by {server.url}" in text and "HTTP 401" in text
    assert KEY[-4:] not in text and "Traceback" not in text


def test_model_refusal_is_reported(serve, query):
    server = serve(ok(None, refusal="I can't help with that."))
    code, text, _ = query(server)
    assert code == 2 and "refused to answer: I can't help with that." in text


def test_other_client_errors_name_the_model_and_hide_masked_keys(serve, query):
    server = serve(error(404, f"model 'nope' not found for key sk-te****{KEY[-4:]}"))
    code, text, _ = query(server, "--model", "nope")
    assert code == 2 and len(server.requests) == 1
    assert "HTTP 404" in text and "--model (nope)" in text and KEY[-4:] not in text


def test_transient_errors_are_retried_with_backoff(serve, query):
    server = serve(error(429, "slow down"), error(503, "busy"), ok(DESCRIPTIONS), ok(GOOD))
    code, text, output = query(server)
    assert code == 0 and output.exists()
    assert len(server.requests) == 4 and "HTTP 429" in text and "HTTP 503" in text


NOT_THE_API = {
    "an HTML page": raw(b"<html><body>Sign in to the proxy</body></html>", "text/html"),
    "HTML sent as JSON": raw(b"<html><body>Sign in</body></html>", "application/json"),
    "an empty body": raw(b"", "application/json"),
    "other JSON": raw(b'{"status": "ok"}', "application/json"),
    "a JSON list": raw(b"[1, 2]", "application/json"),
    "a choice without a message": raw(b'{"choices": [{"index": 0}]}', "application/json"),
}


@pytest.mark.parametrize("answer", NOT_THE_API, ids=list(NOT_THE_API))
def test_an_answer_that_is_not_the_apis_json_is_retried_then_reported(serve, query, answer):
    server = serve(NOT_THE_API[answer], ok(DESCRIPTIONS), ok(GOOD))
    code, text, output = query(server)
    assert code == 0 and output.exists() and len(server.requests) == 3
    assert "not the API's JSON" in text and "retry 1/3" in text

    server = serve(NOT_THE_API[answer])
    code, text, output = query(server, "--retries", "1", to=output.with_name("other.json"))
    assert code == 2 and len(server.requests) == 2 and "Traceback" not in text
    (line,) = [line for line in text.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: gave up after 2 attempts: ") and "not the API's JSON" in line


def test_timeouts_are_retried_then_reported(serve, query):
    server = serve(ok(DESCRIPTIONS, delay=1.5))
    start = time.monotonic()
    code, text, output = query(server, "--timeout", "0.3", "--retries", "1")
    assert code == 2 and not output.exists()
    assert len(server.requests) == 2
    assert "gave up after 2 attempts: the request timed out" in text
    assert time.monotonic() - start < 1.5  # the client stopped waiting at --timeout


def test_unreachable_service_is_retried_then_reported(query):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = type("Closed", (), {"url": f"http://127.0.0.1:{port}/v1"})()  # nothing listens on this port
    code, text, _ = query(nowhere, "--retries", "1")
    assert code == 2
    assert f"gave up after 2 attempts: cannot connect to {nowhere.url}" in text


def test_missing_key_fails_before_contacting_the_server(serve, query, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server = serve(ok(GOOD))
    code, text, output = query(server)
    assert code == 2 and not output.exists()
    assert server.requests == []
    assert "OPENAI_API_KEY is not set" in text


def test_parse_attributes_rules():
    assert gpt_query.parse_attributes('{"attributes": ["A", " b "]}', 2) == ["a", "b"]
    for text, problem in [
        ('{"attributes": ["a", "a"]}', "repeated"),
        ('{"attributes": ["a", "b2"]}', "single words"),
        ('{"attributes": "a b"}', "no JSON object"),
        ("no json here", "no JSON object"),
        ('{"attributes": ["a"]}', "1 attributes instead of 2"),
    ]:
        with pytest.raises(ValueError, match=problem):
            gpt_query.parse_attributes(text, 2)


def sentences(name, k, start=0):
    return [f"A {name} in photo {i}, seen from the side." for i in range(start, start + k)]


def described(name, k):
    return ok(json.dumps({"descriptions": sentences(name, k)}))


def asked_for(server):
    """The class named in each description request, from its prompt."""
    return [r["body"]["messages"][0]["content"].split('"')[1] for r in server.requests]


def test_descriptions_are_written_per_class_in_the_original_format(serve, query, tmp_path):
    out = tmp_path / "cal_prompts_full.json"
    extra = '```json\n{"descriptions": ' + json.dumps(sentences("red fox", 4)) + "}\n```"  # fenced, one too many
    server = serve(described("golden retriever", 3), described("tabby cat", 3), ok(extra))
    code, text, _ = query(server, "--descriptions", "--per-class", "3", to=out)
    assert code == 0
    written = out.read_text(encoding="utf-8")
    assert json.loads(written) == {
        "golden retriever": sentences("golden retriever", 3),
        "tabby cat": sentences("tabby cat", 3),  # underscores written as spaces
        "red fox": sentences("red fox", 3),  # the first 3 kept
    }
    assert written.startswith('{\n    "golden retriever": [\n        "A golden retriever in photo 0')
    assert asked_for(server) == ["golden retriever", "tabby cat", "red fox"]
    assert all(r["body"]["response_format"] == {"type": "json_object"} for r in server.requests)
    assert "holding 3 sentences" in server.requests[0]["body"]["messages"][0]["content"]
    assert "3 classes with at least 3 descriptions each" in text and "(3 asked now)" in text
    assert not list(tmp_path.glob(".*tmp")) and "SECRETKEY" not in written


def test_malformed_descriptions_are_corrected_and_retried(serve, query, tmp_path):
    out = tmp_path / "descriptions.json"
    bad = ["A cat.", "a CAT.", "", "1. A cat. 2. A dog.", "x" * 301, 7, "Two\nlines."]
    server = serve(ok("Here are some cats."), ok(json.dumps({"descriptions": bad})), described("cat", 2))
    code, text, _ = query(server, "--descriptions", "--per-class", "2", source=("--classes", "cat"), to=out)
    assert code == 0 and json.loads(out.read_text()) == {"cat": sentences("cat", 2)}
    assert len(server.requests) == 3 and text.count("unusable answer") == 2
    last = server.requests[2]["body"]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert 'no JSON object with a "descriptions" list' in last[2]["content"]
    problem = last[4]["content"]
    assert "1 usable descriptions instead of 2" in problem
    for reason in ("empty or not text", "repeated", "longer than 300 characters", "more than one description"):
        assert reason in problem


def test_a_class_that_never_gets_enough_descriptions_is_an_error_naming_it(serve, query, tmp_path):
    out = tmp_path / "descriptions.json"
    server = serve(described("golden retriever", 3), described("tabby cat", 2))
    code, text, _ = query(server, "--descriptions", "--per-class", "3", "--retries", "1", to=out)
    assert code == 2 and len(server.requests) == 1 + 2
    assert "error: class 'tabby cat': gpt-4o gave no usable answer in 2 attempts" in text
    assert "2 usable descriptions instead of 3" in text and "1 of 3 classes are saved" in text
    assert json.loads(out.read_text()) == {"golden retriever": sentences("golden retriever", 3)}


def test_a_rerun_asks_only_for_the_classes_still_missing(serve, query, tmp_path):
    out = tmp_path / "descriptions.json"
    done = {"golden retriever": sentences("golden retriever", 3), "tabby cat": ["Too few."], "zebra": ["Kept."]}
    out.write_text(json.dumps(done))  # on one line: the rewrite keeps that
    server = serve(described("tabby cat", 3), described("red fox", 3))
    code, text, _ = query(server, "--descriptions", "--per-class", "3", to=out)
    assert code == 0 and asked_for(server) == ["tabby cat", "red fox"]
    assert "1 of 3 classes already have 3 descriptions" in text
    written = out.read_text()
    assert json.loads(written) == {**done, "tabby cat": sentences("tabby cat", 3), "red fox": sentences("red fox", 3)}
    assert written.count("\n") == 1

    code, text, _ = query(server, "--descriptions", "--per-class", "3", to=out)
    assert code == 0 and len(server.requests) == 2 and "(0 asked now)" in text and out.read_text() == written


def test_an_interrupted_run_keeps_the_classes_it_finished(serve, query, tmp_path, monkeypatch):
    out = tmp_path / "descriptions.json"
    server = serve(described("golden retriever", 2))
    complete = gpt_query.Chat.complete

    def interrupt_the_second(chat, *args):
        if server.requests:
            raise KeyboardInterrupt
        return complete(chat, *args)

    monkeypatch.setattr(gpt_query.Chat, "complete", interrupt_the_second)
    code, text, _ = query(server, "--descriptions", "--per-class", "2", to=out)
    assert code == 130 and "rerun the same command to resume" in text
    assert json.loads(out.read_text()) == {"golden retriever": sentences("golden retriever", 2)}


@pytest.mark.parametrize(
    "content",
    ['{"cat": [', '["A cat."]', '{"cat": "A cat."}', '{"cat": ["A cat.", 2]}', "\xff\xfe"],
    ids=["truncated", "list", "string", "number", "not-utf8"],
)
def test_an_output_file_of_another_form_is_refused_untouched(serve, query, tmp_path, content):
    out = tmp_path / "descriptions.json"
    out.write_bytes(content.encode("latin-1"))
    server = serve(described("cat", 20))
    code, text, _ = query(server, "--descriptions", to=out)
    assert code == 2 and server.requests == []
    assert f"error: --output {out} is not a {{class name: [sentence, ...]}} JSON object" in text
    assert "Traceback" not in text and out.read_bytes() == content.encode("latin-1")


@pytest.mark.parametrize(
    ("lines", "source", "message"),
    [
        (None, "--classnames", "cannot read --classes-file"),
        ("\n  \n", "--classnames", "no class names given"),
        ('{"train": [["a.jpg", "one", "cat"]], "val": [], "test": []}', "--split-file", "entry 0 of 'train'"),
        ("[]", "--split-file", "must hold an object with the lists"),
    ],
    ids=["missing-file", "empty-list", "bad-entry", "not-a-split"],
)
def test_bad_class_sources_are_one_clear_error(serve, query, tmp_path, lines, source, message):
    names = tmp_path / "names.txt"
    if lines is not None:
        names.write_text(lines)
    out = tmp_path / "descriptions.json"
    server = serve(described("cat", 20))
    code, text, _ = query(server, "--descriptions", source=(source, str(names)), to=out)
    assert code == 2 and server.requests == [] and not out.exists()
    assert "error: " in text and message in text and "Traceback" not in text


def test_descriptions_need_the_key_before_anything_is_asked(serve, query, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    out = tmp_path / "descriptions.json"
    server = serve(described("cat", 20))
    code, text, _ = query(server, "--descriptions", to=out)
    assert code == 2 and server.requests == [] and not out.exists()
    assert "error: OPENAI_API_KEY is not set" in text


def test_parse_descriptions_rules():
    answer = json.dumps({"descriptions": [" A cat. ", "- A dog.", "A cow.", "a cow."]})
    assert gpt_query.parse_descriptions(answer, 2) == ["A cat.", "A cow."]
    with pytest.raises(ValueError, match=r"2 usable descriptions instead of 3 \(others rejected: more than one"):
        gpt_query.parse_descriptions(answer, 3)
    with pytest.raises(ValueError, match="no JSON object"):
        gpt_query.parse_descriptions('{"descriptions": "A cat."}', 1)
    assert gpt_query.json_indent('{\n  "a": []\n}') == 2 and gpt_query.json_indent('{"a": []}') is None
