import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_data import make_caltech101, original_anchor_file  # noqa: E402
from tiny_clip import make_tiny_clip, save_state_dict, save_torchscript  # noqa: E402

# Test tensors are tiny: intra-op threads cost far more in start-up and spin-waiting than they save.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_shared_feature_cache(monkeypatch):
    """The run scripts read test-image features from a cache in the home folder; tests that want it say where."""
    monkeypatch.setenv("FEATURE_CACHE", "0")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A fake Caltech101 (its real layout and split file) for the tests of one module, which may write into it."""
    return make_caltech101(str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def tiny_vit_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_clip") / "tiny_vit.pt"
    save_state_dict(make_tiny_clip("vit"), path)
    return path


@pytest.fixture(scope="session")
def original_anchor_path(tmp_path_factory):
    """An AnchorOPT anchor for the tiny CLIP's width, in the original's released format (its stage-I checkpoint)."""
    return original_anchor_file(tmp_path_factory.mktemp("anchor") / "model.pth.tar")


@pytest.fixture(scope="session")
def tiny_rn_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_clip") / "tiny_rn.pt"
    save_state_dict(make_tiny_clip("rn"), path)
    return path


@pytest.fixture(scope="session")
def tiny_vit_jit_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_clip") / "tiny_vit_jit.pt"
    save_torchscript(make_tiny_clip("vit"), path)
    return path
