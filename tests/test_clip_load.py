"""clip.load / load_state_dict on both checkpoint forms, and the verified, cached download."""

import hashlib
import http.server
import os
import socket
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_clip import example_inputs, make_tiny_clip, save_torchscript

import clip
from clip import clip as clip_module
from clip.model import build_model


def outputs(model):
    image, text = example_inputs(model, batch=3)
    with torch.no_grad():
        return model.encode_image(image), model.encode_text(text), model(image, text)[0]


@pytest.fixture(scope="module")
def checkpoints(tiny_vit_path, tiny_rn_path, tiny_vit_jit_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    rn_jit, wrapped = folder / "rn_jit.pt", folder / "wrapped.pt"
    save_torchscript(make_tiny_clip("rn"), rn_jit)
    torch.save({"state_dict": make_tiny_clip("rn").state_dict(), "epoch": 3}, wrapped)
    return {
        ("vit", "state_dict"): tiny_vit_path,
        ("vit", "torchscript"): tiny_vit_jit_path,
        ("rn", "state_dict"): tiny_rn_path,
        ("rn", "torchscript"): rn_jit,
        ("rn", "wrapped"): wrapped,
    }


@pytest.mark.parametrize(
    ("kind", "form"),
    [("vit", "state_dict"), ("vit", "torchscript"), ("rn", "state_dict"), ("rn", "torchscript"), ("rn", "wrapped")],
)
def test_load_matches_build_model_for_every_checkpoint_form(checkpoints, kind, form):
    path = checkpoints[(kind, form)]
    original = make_tiny_clip(kind)
    state_dict = clip.load_state_dict(str(path))
    assert list(state_dict) == list(original.state_dict())
    assert all(torch.equal(state_dict[k], v) and v.device.type == "cpu" for k, v in original.state_dict().items())

    model, preprocess = clip.load(str(path))
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    direct = build_model(original.state_dict()).float()
    for loaded, expected, reference in zip(outputs(model), outputs(direct), outputs(original)):
        assert torch.equal(loaded, expected)
        assert torch.equal(loaded, reference)  # tiny weights are fp16-representable, so nothing is lost
    assert model.visual.input_resolution == 32


def test_preprocess_is_resize_crop_rgb_normalize(tiny_vit_path):
    _, preprocess = clip.load(str(tiny_vit_path))
    pixels = np.zeros((40, 64, 4), dtype=np.uint8)
    pixels[:] = 255
    pixels[:, :4, :3] = 0  # a black stripe that the centre crop removes
    out = preprocess(Image.fromarray(pixels, mode="RGBA"))
    assert out.shape == (3, 32, 32)
    expected = (1 - torch.tensor(clip_module.CLIP_MEAN)) / torch.tensor(clip_module.CLIP_STD)
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected, rtol=0, atol=1e-4)


def test_jit_returns_the_archive_and_refuses_plain_state_dicts(tiny_vit_jit_path, tiny_vit_path):
    module, preprocess = clip.load(str(tiny_vit_jit_path), jit=True)
    assert isinstance(module, torch.jit.ScriptModule)
    image, text = example_inputs(make_tiny_clip("vit"))
    with torch.no_grad():
        assert torch.equal(module(image, text)[0], make_tiny_clip("vit")(image, text)[0])
    assert preprocess.transforms[1].size == (32, 32)
    with pytest.raises(RuntimeError, match="jit=True needs a TorchScript archive"):
        clip.load(str(tiny_vit_path), jit=True)


def test_bad_names_and_files_get_clear_errors(tmp_path):
    with pytest.raises(RuntimeError, match=r"'ViT-B/99'.*ViT-B/16"):
        clip.load("ViT-B/99")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="neither a TorchScript archive nor a state dict"):
        clip.load_state_dict(str(garbage))
    not_tensors = tmp_path / "list.pt"
    torch.save([1, 2], not_tensors)
    with pytest.raises(RuntimeError, match="not a state dict of tensors"):
        clip.load_state_dict(str(not_tensors))


def test_model_table_covers_all_nine_openai_checkpoints():
    assert clip.available_models() == [
        "RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px",
    ]
    for name, url in clip_module._MODELS.items():
        prefix, sha256, file = url.rsplit("/", 2)
        assert prefix == "https://openaipublic.azureedge.net/clip/models"
        assert len(sha256) == 64 and int(sha256, 16) >= 0
        assert file == name.replace("/", "-").replace("@", "-") + ".pt"
    assert clip_module._MODELS["ViT-B/16"].split("/")[-2].startswith("5806e77c")


# ---- download ------------------------------------------------------------------------------------------------


class _Server:
    """A local HTTP server that serves fixed bytes per path and counts the requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, body: bytes, name: str = "Tiny.pt", claimed_sha256: str | None = None) -> str:
        sha256 = claimed_sha256 or hashlib.sha256(body).hexdigest()
        path = f"/clip/models/{sha256}/{name}"
        self.files[path] = body
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture(scope="module")
def server():
    serving = _Server()
    yield serving
    serving.httpd.shutdown()
    serving.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


PAYLOAD = os.urandom(300_000)


def test_download_verifies_caches_and_reuses(server, tmp_path):
    url = server.publish(PAYLOAD)
    server.requests.clear()
    path = clip_module._download(url, tmp_path)
    assert path == str(tmp_path / "Tiny.pt")
    assert open(path, "rb").read() == PAYLOAD
    assert clip_module._download(url, tmp_path) == path
    assert len(server.requests) == 1
    assert os.listdir(tmp_path) == ["Tiny.pt"]


def test_download_with_wrong_hash_fails_and_leaves_nothing(server, tmp_path):
    url = server.publish(PAYLOAD, name="Bad.pt", claimed_sha256="0" * 64)
    with pytest.raises(RuntimeError, match=r"Bad\.pt.*SHA-256 is [0-9a-f]{64}, not 0{64}"):
        clip_module._download(url, tmp_path)
    assert os.listdir(tmp_path) == []


def test_corrupt_cached_file_is_reported_and_replaced(server, tmp_path):
    url = server.publish(PAYLOAD)
    (tmp_path / "Tiny.pt").write_bytes(PAYLOAD[:1000])
    server.requests.clear()
    with pytest.warns(RuntimeWarning, match="does not match"):
        path = clip_module._download(url, tmp_path)
    assert open(path, "rb").read() == PAYLOAD
    assert len(server.requests) == 1
    assert os.listdir(tmp_path) == ["Tiny.pt"]


def test_cache_path_that_is_a_folder_is_an_error(server, tmp_path):
    url = server.publish(PAYLOAD)
    (tmp_path / "Tiny.pt").mkdir()
    with pytest.raises(RuntimeError, match="not a regular file"):
        clip_module._download(url, tmp_path)


def test_unreachable_host_explains_how_to_work_offline(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends, so connections are refused
    url = f"http://127.0.0.1:{port}/clip/models/{'ab' * 32}/ViT-B-16.pt"
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError) as info:
        clip_module._download(url, root)
    message = str(info.value)
    for part in ("ViT-B-16.pt", url, str(root), "MODEL.BACKBONE.NAME"):
        assert part in message
    assert os.listdir(root) == []


def test_load_by_name_downloads_into_download_root(server, tmp_path, monkeypatch, tiny_rn_path):
    url = server.publish(tiny_rn_path.read_bytes(), name="RN-Tiny.pt")
    monkeypatch.setattr(clip_module, "_MODELS", {"RN-Tiny": url})
    assert clip.available_models() == ["RN-Tiny"]
    model, _ = clip.load("RN-Tiny", download_root=str(tmp_path))
    assert (tmp_path / "RN-Tiny.pt").is_file()
    for loaded, expected in zip(outputs(model), outputs(make_tiny_clip("rn"))):
        assert torch.equal(loaded, expected)
