"""tools/download_datasets.py on zips of the fake datasets (tests/fake_datasets.py), from a folder or through a
stand-in for huggingface_hub: nothing is downloaded."""

import hashlib
import os
import shutil
import sys
import zipfile
from types import SimpleNamespace

import fake_datasets as fake
import huggingface_hub
import pytest

from datasets import catalog
from tools import download_datasets as tool

SHARED = [info.key for info in catalog.DATASETS if info.archive]


def files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names)


def fake_dataset(tmp_path, key):
    """The fake copy of dataset `key` in its folder under tmp_path/src, with its split file (made by its reader)."""
    info = catalog.by_key(key)
    getattr(fake, key)(tmp_path / "src")
    tool.open_dataset(str(tmp_path / "src"), info)
    return tmp_path / "src" / tool.reader_of(info).dataset_dir


def make_zip(folder, path, top=None, leave_out=(), extra=None):
    """Zip the files of `folder` under the folder `top` (its own name by default; "" for none), uncompressed so that
    a changed byte is a changed image."""
    top = folder.name if top is None else top
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in files(folder):
            if name not in leave_out:
                archive.write(folder / name, os.path.join(top, name))
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return path


def zipped(tmp_path, key, **options):
    """A folder of zips holding the zip of dataset `key`, named as in the hub."""
    make_zip(fake_dataset(tmp_path, key), tmp_path / "zips" / catalog.by_key(key).archive, **options)
    return tmp_path / "zips"


def run(*args):
    return tool.main([str(a) for a in args])


def one_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("key", SHARED)
def test_a_good_zip_is_unpacked_where_the_reader_looks(tmp_path, capsys, key):
    source = fake_dataset(tmp_path, key)
    make_zip(source, tmp_path / "zips" / catalog.by_key(key).archive)
    data = tmp_path / "data"
    assert run(key, "--root", data, "--from", tmp_path / "zips") == 0
    expected = tool.sizes(tool.open_dataset(str(tmp_path / "src"), catalog.by_key(key)))
    assert f"{key}: unpacked into {data / source.name} ({expected})\n" in capsys.readouterr().out
    assert os.listdir(data) == [source.name]  # nothing staged is left beside it
    assert files(data / source.name) == files(source)


def test_the_summary_line_gives_classes_and_split_sizes(tmp_path, capsys):
    zips = zipped(tmp_path, "dtd")
    assert run("dtd", "--root", tmp_path / "data", "--from", zips) == 0
    out = capsys.readouterr().out
    assert f"dtd.zip: SHA-256 {hashlib.sha256((zips / 'dtd.zip').read_bytes()).hexdigest()} (not checked" in out
    assert out.endswith(f"dtd: unpacked into {tmp_path / 'data' / 'dtd'} (5 classes, 15 train / 5 val / 10 test "
                        "images)\n")


def test_a_checksum_listed_in_the_folder_is_checked(tmp_path, capsys):
    zips = zipped(tmp_path, "dtd")
    (zips / "SHA256SUMS").write_text(f"{hashlib.sha256((zips / 'dtd.zip').read_bytes()).hexdigest()}  dtd.zip\n")
    assert run("dtd", "--root", tmp_path / "data", "--from", zips) == 0
    assert "not checked" not in capsys.readouterr().out


def test_a_wrong_checksum_installs_nothing(tmp_path, capsys):
    zips = zipped(tmp_path, "dtd")
    (zips / "SHA256SUMS").write_text(f"{'0' * 64} *dtd.zip\n")
    assert run("dtd", "--root", tmp_path / "data", "--from", zips) == 2
    err = one_error(capsys)
    assert f"error: dtd: {zips / 'dtd.zip'} has SHA-256" in err and f"SHA256SUMS lists {'0' * 64}" in err
    assert "copy it again" in err and os.listdir(tmp_path / "data") == []


@pytest.mark.parametrize("damage", ["truncated", "changed byte"])
def test_a_truncated_or_damaged_zip_installs_nothing(tmp_path, capsys, damage):
    zips = zipped(tmp_path, "dtd")
    raw = (zips / "dtd.zip").read_bytes()
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        at = raw.index(fake.JPEG[200:240]) + 10  # inside the first image
        raw = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:]
    (zips / "dtd.zip").write_bytes(raw)
    assert run("dtd", "--root", tmp_path / "data", "--from", zips) == 2
    err = one_error(capsys)
    assert f"{zips / 'dtd.zip'} is not a complete zip file" in err and "fetch it again" in err
    assert os.listdir(tmp_path / "data") == []


def test_an_unknown_name_is_one_line_listing_the_valid_ones(tmp_path, capsys):
    assert run("caltech", "--root", tmp_path / "data") == 2
    err = one_error(capsys)
    assert "unknown dataset 'caltech'. Did you mean caltech101?" in err
    assert "Valid names: imagenet, caltech101, " in err and "imagenet_r, all" in err
    assert not (tmp_path / "data").exists()
    assert run("attribute_world", "--root", tmp_path / "data") == 2  # generated, not downloaded
    assert "unknown dataset 'attribute_world'" in one_error(capsys)


def test_all_is_every_shared_dataset_once():
    assert [info.key for info in tool.choose(["all"])] == SHARED and len(SHARED) == 14
    assert [info.key for info in tool.choose(["dtd", "all", "dtd"])] == ["dtd"] + [k for k in SHARED if k != "dtd"]


def test_all_goes_on_after_a_failure_and_says_what_failed(tmp_path, capsys):
    zips = zipped(tmp_path, "eurosat")
    assert run("all", "--root", tmp_path / "data", "--from", zips) == 2
    captured = capsys.readouterr()
    assert captured.err.count("error: ") == 13 and f"error: dtd: {zips / 'dtd.zip'} not found" in captured.err
    assert "eurosat: unpacked into" in captured.out and "1 of 14 datasets ready; failed: caltech101, " in captured.out
    assert "note: ImageNet is not in the authors' repository" in captured.out


def test_a_second_run_leaves_the_dataset_alone(tmp_path, capsys):
    zips = zipped(tmp_path, "dtd")
    data = tmp_path / "data"
    assert run("dtd", "--root", data, "--from", zips) == 0
    before = {name: os.stat(data / "dtd" / name).st_mtime_ns for name in files(data / "dtd")}
    os.remove(zips / "dtd.zip")  # not needed any more
    capsys.readouterr()
    assert run("dtd", "--root", data, "--from", zips) == 0
    assert capsys.readouterr().out == (f"dtd: already in {data / 'dtd'}, left as it is (5 classes, 15 train / 5 val / "
                                       "10 test images)\n")
    assert {name: os.stat(data / "dtd" / name).st_mtime_ns for name in files(data / "dtd")} == before


def test_data_in_place_that_does_not_open_is_never_replaced(tmp_path, capsys):
    zips = zipped(tmp_path, "dtd")
    data = tmp_path / "data"
    assert run("dtd", "--root", data, "--from", zips) == 0
    os.remove(data / "dtd" / "images" / "banded" / "banded_0000.jpg")
    kept = files(data / "dtd")
    capsys.readouterr()
    assert run("dtd", "--root", data, "--from", zips) == 2
    err = one_error(capsys)
    assert f"{data / 'dtd'} is there, but the reader does not open it (1 of 30 image files are missing" in err
    assert "move the folder away" in err and files(data / "dtd") == kept


def test_a_zip_without_its_split_file_names_the_file_and_where_it_goes(tmp_path, capsys):
    zips = zipped(tmp_path, "dtd", leave_out={"split_zhou_DescribableTextures.json"})
    data = tmp_path / "data"
    assert run("dtd", "--root", data, "--from", zips) == 2
    split = data / "dtd" / "split_zhou_DescribableTextures.json"
    assert f"error: dtd: {split} is missing: without it the reader would make a split of its own" in one_error(capsys)
    assert not split.exists() and (data / "dtd" / "images" / "banded").is_dir()  # images in place, no split made

    shutil.copy(tmp_path / "src" / "dtd" / split.name, split)
    assert run("dtd", "--root", data) == 0  # checked, nothing downloaded
    assert "dtd: already in" in capsys.readouterr().out


def test_a_variant_without_classnames_says_to_copy_imagenets(tmp_path, capsys):
    zips = zipped(tmp_path, "imagenet_a", leave_out={"classnames.txt"})
    assert run("imagenet_a", "--root", tmp_path / "data", "--from", zips) == 2
    err = one_error(capsys)
    assert f"{tmp_path / 'data' / 'imagenet-adversarial' / 'classnames.txt'} is missing: copy ImageNet's" in err


@pytest.mark.parametrize("top", ["", "food101", "copy/food-101"])
def test_the_dataset_folder_is_found_whatever_wraps_it(tmp_path, capsys, top):
    extra = {"__MACOSX/food-101/._images": b"", os.path.join(top, "split_fewshot", "shot_16-seed_1.pkl"): b"elsewhere"}
    zips = zipped(tmp_path, "food101", top=top, extra=extra)
    data = tmp_path / "data"
    assert run("food101", "--root", data, "--from", zips) == 0
    assert os.listdir(data) == ["food-101"] and files(data / "food-101") == files(tmp_path / "src" / "food-101")


def test_a_zip_of_another_dataset_is_refused(tmp_path, capsys):
    make_zip(fake_dataset(tmp_path, "dtd"), tmp_path / "zips" / "eurosat.zip")
    assert run("eurosat", "--root", tmp_path / "data", "--from", tmp_path / "zips") == 2
    err = one_error(capsys)
    assert "eurosat.zip holds no folder with 2750 or split_zhou_EuroSAT.json" in err
    assert os.listdir(tmp_path / "data") == []


def test_a_zip_the_reader_cannot_open_installs_nothing(tmp_path, capsys):
    zips = zipped(tmp_path, "dtd", leave_out={"images/bumpy/bumpy_0003.jpg"})
    assert run("dtd", "--root", tmp_path / "data", "--from", zips) == 2
    err = one_error(capsys)
    assert "dtd.zip unpacks, but the reader does not open it (1 of 30 image files are missing" in err
    assert "nothing was installed" in err and os.listdir(tmp_path / "data") == []


def test_imagenet_says_where_to_get_it_and_is_checked_once_there(tmp_path, capsys):
    data = tmp_path / "data"
    assert run("imagenet", "--root", data) == 2
    err = one_error(capsys)
    assert "https://image-net.org" in err and f"{data}/imagenet/images/{{train,val}}/<wnid>/*.JPEG" in err
    fake.imagenet(data)
    assert run("imagenet", "--root", data) == 0
    assert "(5 classes, 20 train / 10 val / 10 test images)" in capsys.readouterr().out


# ----- the hub, through a stand-in for huggingface_hub ----------------------------------------------------------------
@pytest.fixture
def hub(monkeypatch, tmp_path):
    """huggingface_hub's download and file listing, answering from tmp_path/hub; `sha256` maps a file to the
    checksum the listing gives (its real one by default)."""
    served = tmp_path / "hub"
    stand_in = SimpleNamespace(calls=[], sha256={}, error=None)

    def get_paths_info(self, repo_id, paths, repo_type=None):
        return [SimpleNamespace(path=p, lfs=SimpleNamespace(sha256=stand_in.sha256.get(p) or
                                                            hashlib.sha256((served / p).read_bytes()).hexdigest()))
                for p in paths if (served / p).is_file()]

    def hf_hub_download(repo_id, filename, *, repo_type=None, local_dir=None, **options):
        stand_in.calls.append((repo_id, filename, repo_type))
        if stand_in.error:
            raise stand_in.error
        if not (served / filename).is_file():
            raise FileNotFoundError(f"404 Client Error.\n\nEntry Not Found for url: .../{filename}")
        os.makedirs(local_dir, exist_ok=True)
        return shutil.copy(served / filename, os.path.join(local_dir, filename))

    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", get_paths_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return stand_in


def test_the_hub_zip_is_downloaded_checked_unpacked_and_removed(tmp_path, capsys, hub):
    zipped(tmp_path, "dtd").rename(tmp_path / "hub")
    data = tmp_path / "data"
    assert run("dtd", "--root", data) == 0
    assert hub.calls == [("zhengli97/prompt_learning_dataset", "dtd.zip", "model")]
    assert f"dtd: unpacked into {data / 'dtd'} (5 classes" in capsys.readouterr().out
    assert os.listdir(data / ".downloads") == []


def test_keep_zips_keeps_the_download(tmp_path, hub):
    zipped(tmp_path, "dtd").rename(tmp_path / "hub")
    assert run("dtd", "--root", tmp_path / "data", "--keep-zips") == 0
    assert (tmp_path / "data" / ".downloads" / "dtd.zip").is_file()


def test_a_download_that_does_not_match_the_hubs_checksum_is_deleted(tmp_path, capsys, hub):
    zipped(tmp_path, "dtd").rename(tmp_path / "hub")
    hub.sha256["dtd.zip"] = "f" * 64
    data = tmp_path / "data"
    assert run("dtd", "--root", data) == 2
    err = one_error(capsys)
    assert f"but the hub lists {'f' * 64}; it was deleted: run this again" in err
    assert os.listdir(data / ".downloads") == [] and not (data / "dtd").exists()


def test_a_file_the_hub_does_not_have_is_named(tmp_path, capsys, hub):
    (tmp_path / "hub").mkdir()
    assert run("dtd", "--root", tmp_path / "data") == 2
    err = one_error(capsys)
    assert "could not download dtd.zip from https://huggingface.co/zhengli97/prompt_learning_dataset " in err
    assert "(FileNotFoundError: 404 Client Error.)" in err and "file list" in err and "still has dtd.zip" in err


def test_no_network_is_one_line_with_the_way_around(tmp_path, capsys, hub):
    zipped(tmp_path, "dtd").rename(tmp_path / "hub")
    hub.error = OSError("Connection refused")
    assert run("dtd", "--root", tmp_path / "data") == 2
    err = one_error(capsys)
    assert "could not download dtd.zip" in err and "Connection refused" in err and "--from FOLDER" in err


def test_without_huggingface_hub_only_the_download_needs_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    zips = zipped(tmp_path, "dtd")
    assert run("dtd", "--root", tmp_path / "data") == 2
    assert "needs the huggingface_hub package: run `pip install huggingface_hub`" in one_error(capsys)
    assert run("dtd", "--root", tmp_path / "data", "--from", zips) == 0


def test_the_catalog_names_a_zip_for_every_shared_dataset():
    archives = {info.key: info.archive for info in catalog.DATASETS if info.role in ("benchmark", "variant")}
    assert archives.pop("imagenet") == ""
    assert all(name.endswith(".zip") for name in archives.values()) and len(set(archives.values())) == 14
