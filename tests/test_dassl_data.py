"""dassl.data: few-shot protocol, base/new subsampling, few-shot cache, transforms, samplers, DataManager."""

import json
import os
import pickle
import random
import shutil

import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data import DataManager, build_data_loader
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, check_image_files, subsample_classes
from dassl.data.datasets.fewshot_cache import load_fewshot_cache, save_fewshot_cache
from dassl.data.samplers import build_sampler
from dassl.data.transforms import Cutout, GaussianNoise, InstanceNormalization, Random2DTranslation, build_transform
from dassl.utils.errors import UserError


def make_items(counts: dict[int, int], root: str = "/data") -> list[Datum]:
    """counts: label -> number of items, in the order the labels should first appear (interleaved)."""
    items, left = [], dict(counts)
    while any(left.values()):
        for label in counts:
            if left[label]:
                items.append(Datum(f"{root}/c{label}/{left[label]}.png", label, classname=f"class_{label}"))
                left[label] -= 1
    return items


def fewshot_as_specified(source, k, repeat):
    """The protocol written out independently: label groups in first-appearance order, then sample/choices/all."""
    order, groups = [], {}
    for item in source:
        if item.label not in groups:
            order.append(item.label)
            groups[item.label] = []
        groups[item.label].append(item)
    picked = []
    for label in order:
        group = groups[label]
        if len(group) >= k:
            picked += random.sample(group, k)
        elif repeat:
            picked += random.choices(group, k=k)
        else:
            picked += group
    return picked


# ---------------------------------------------------------------- few-shot protocol


@pytest.mark.parametrize("repeat", [False, True])
def test_fewshot_matches_the_specified_rng_order(repeat, capsys):
    items = make_items({7: 6, 2: 3, 5: 10, 0: 1, 3: 4})  # labels 2 and 0 have fewer than 4 items
    random.seed(123)
    got = DatasetBase().generate_fewshot_dataset(items, num_shots=4, repeat=repeat)
    state_after = random.getstate()
    random.seed(123)
    expected = fewshot_as_specified(items, 4, repeat)
    assert got == expected
    assert random.getstate() == state_after  # exactly the same number of RNG calls
    assert "Creating a 4-shot dataset" in capsys.readouterr().out
    assert [d.label for d in got][::4][:1] == [7]  # first-appearance order, not sorted
    per_label = {label: sum(d.label == label for d in got) for label in (7, 2, 5, 0, 3)}
    assert per_label == ({7: 4, 2: 4, 5: 4, 0: 4, 3: 4} if repeat else {7: 4, 2: 3, 5: 4, 0: 1, 3: 4})


def test_fewshot_several_sources_share_the_rng_stream_and_small_k_is_identity():
    train, val = make_items({1: 5, 0: 5}), make_items({0: 3, 1: 3}, root="/val")
    random.seed(0)
    got_train, got_val = DatasetBase().generate_fewshot_dataset(train, val, num_shots=2)
    random.seed(0)
    assert got_train == fewshot_as_specified(train, 2, False)
    assert got_val == fewshot_as_specified(val, 2, False)
    random.seed(0)
    other = DatasetBase().generate_fewshot_dataset(train, num_shots=2)
    assert other == got_train  # one source gives one list
    random.seed(1)
    assert DatasetBase().generate_fewshot_dataset(train, num_shots=2) != got_train
    assert DatasetBase().generate_fewshot_dataset(train, num_shots=-1) is train
    assert DatasetBase().generate_fewshot_dataset(train, val, num_shots=0) == (train, val)


def test_dataset_base_properties_and_grouping():
    train = make_items({2: 2, 0: 1, 1: 1})
    base = DatasetBase(train_x=train, val=train[:1], test=train)
    assert base.num_classes == 3
    assert base.lab2cname == {0: "class_0", 1: "class_1", 2: "class_2"}
    assert base.classnames == ["class_0", "class_1", "class_2"]
    assert base.train_u is None and base.val == train[:1]
    assert list(DatasetBase.split_dataset_by_label(train)) == [2, 0, 1]
    domains = [Datum("a", 0, domain=1), Datum("b", 0, domain=0), Datum("c", 1, domain=1)]
    assert {d: len(v) for d, v in DatasetBase.split_dataset_by_domain(domains).items()} == {1: 2, 0: 1}
    assert DatasetBase().num_classes == 0


def test_check_image_files_reports_all_missing_files_at_once(tmp_path):
    present = tmp_path / "ok.png"
    present.write_bytes(b"x")
    items = [Datum(str(present), 0)] + [Datum(str(tmp_path / f"gone{i}.png"), 0) for i in range(7)]
    check_image_files(items[:1], str(tmp_path))  # nothing missing: no error
    with pytest.raises(UserError) as err:
        check_image_files(items, str(tmp_path))
    message = str(err.value)
    assert "7 of 8 image files are missing" in message and "docs/DATASETS.md" in message
    assert "gone0.png" in message and "gone4.png" in message and "gone6.png" not in message
    assert "and 2 more" in message


def test_datum_rejects_non_string_paths():
    with pytest.raises(TypeError, match="impath"):
        Datum(impath=None, label=0)


# ---------------------------------------------------------------- base / new classes


def test_subsample_classes_counts_and_relabelling(capsys):
    train = make_items({label: 2 for label in range(37)})
    test = make_items({label: 1 for label in range(37)}) + [Datum("/data/extra.png", 40, classname="extra")]
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert "SUBSAMPLE BASE CLASSES!" in capsys.readouterr().out
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert "SUBSAMPLE NEW CLASSES!" in capsys.readouterr().out

    assert len({d.label for d in base_train}) == 19 and len({d.label for d in new_train}) == 18
    assert sorted({d.label for d in base_test}) == list(range(19))
    assert sorted({d.label for d in new_test}) == list(range(18))  # label 40 is not in train: dropped
    assert {d.classname for d in new_test} == {f"class_{label}" for label in range(19, 37)}
    # relabelled in order, same path and class name
    assert all(d.classname == f"class_{d.label + 19}" for d in new_train)
    assert [d.impath for d in base_train] == [d.impath for d in train if d.label < 19]


def test_subsample_classes_resets_domain_and_validates_mode():
    train = [Datum("/a.png", 3, domain=2, classname="x"), Datum("/b.png", 8, domain=2, classname="y")]
    (kept,) = subsample_classes(train, subsample="new")
    assert kept == [Datum("/b.png", 0, domain=0, classname="y")]
    assert subsample_classes(train, train, subsample="all") == [train, train]
    with pytest.raises(UserError, match="base"):
        subsample_classes(train, subsample="novel")


# ---------------------------------------------------------------- few-shot cache


def test_fewshot_cache_json_round_trip_uses_paths_relative_to_the_dataset_dir(tmp_path):
    dataset_dir = tmp_path / "root" / "pets"
    cache = dataset_dir / "split_fewshot" / "shot_2-seed_1.json"
    outside = str(tmp_path / "elsewhere" / "x.jpg")
    data = {
        "train": [Datum(str(dataset_dir / "images" / "a.jpg"), 0, classname="cat"), Datum(outside, 1, classname="dog")],
        "val": [Datum(str(dataset_dir / "images" / "b.jpg"), 1, domain=2, classname="dog")],
    }
    assert load_fewshot_cache(str(cache)) is None
    save_fewshot_cache(str(cache), data)
    assert os.listdir(cache.parent) == [cache.name]  # written in one piece, no temporary left over
    raw = json.loads(cache.read_text())
    assert raw["train"] == [[os.path.join("images", "a.jpg"), 0, "cat"], [outside, 1, "dog"]]
    assert raw["val"] == [[os.path.join("images", "b.jpg"), 1, "dog", 2]]
    assert load_fewshot_cache(str(cache)) == data

    moved = tmp_path / "new_root" / "pets"
    shutil.copytree(dataset_dir, moved)
    loaded = load_fewshot_cache(str(moved / "split_fewshot" / cache.name))
    assert loaded["train"][0].impath == str(moved / "images" / "a.jpg")
    assert loaded["train"][1].impath == outside
    assert loaded["val"][0].label == 1 and loaded["val"][0].domain == 2


def test_fewshot_cache_rejects_malformed_json(tmp_path):
    cache = tmp_path / "split_fewshot" / "shot_1-seed_1.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"train": [["only-a-path"]]}))
    with pytest.raises(UserError, match="shot_1-seed_1.json"):
        load_fewshot_cache(str(cache))


class _LegacyDatum:
    """Stand-in for the original class: same private fields, pickled under a different class path."""

    def __init__(self, impath, label, classname):
        self._impath, self._label, self._domain, self._classname = impath, label, 0, classname


def _as_original_pickle(obj) -> bytes:
    """Pickle with protocol 2 and point the class reference at the original module path."""
    blob = pickle.dumps(obj, protocol=2)
    here = f"{_LegacyDatum.__module__}\n{_LegacyDatum.__qualname__}\n".encode()
    assert here in blob
    return blob.replace(here, b"dassl.data.datasets.base_dataset\nDatum\n")


def test_fewshot_cache_reads_original_pickles(tmp_path):
    folder = tmp_path / "pets" / "split_fewshot"
    folder.mkdir(parents=True)
    data = {"train": [Datum("/old/pets/images/a.jpg", 0, classname="cat")], "val": [Datum("/old/b.jpg", 1, 0, "dog")]}
    (folder / "shot_1-seed_1.pkl").write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    assert load_fewshot_cache(str(folder / "shot_1-seed_1.json")) == data

    legacy = {"train": [_LegacyDatum("/old/c.jpg", 3, "bird")]}
    (folder / "shot_2-seed_1.pkl").write_bytes(_as_original_pickle(legacy))
    loaded = load_fewshot_cache(str(folder / "shot_2-seed_1.json"))
    assert loaded == {"train": [Datum("/old/c.jpg", 3, 0, "bird")]}
    assert type(loaded["train"][0]) is Datum and loaded["train"][0].label == 3

    # With both present the JSON wins.
    save_fewshot_cache(str(folder / "shot_1-seed_1.json"), {"train": data["train"]})
    assert list(load_fewshot_cache(str(folder / "shot_1-seed_1.json"))) == ["train"]


class _Exploit:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_fewshot_cache_refuses_pickles_with_other_globals(tmp_path):
    folder = tmp_path / "pets" / "split_fewshot"
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    payloads = {
        "os_system_v0": f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(),
        "os_system_v5": pickle.dumps({"train": [_Exploit(f"touch {marker}")]}, protocol=5),
        "builtins_eval": f"cbuiltins\neval\n(S'open(\"{marker}\", \"w\")'\ntR.".encode(),
        "test_class": pickle.dumps({"train": [_LegacyDatum("/a", 0, "a")]}),
    }
    for stem, blob in payloads.items():
        (folder / f"{stem}.pkl").write_bytes(blob)
        with pytest.raises(UserError, match=f"Refusing to load .*{stem}.pkl"):
            load_fewshot_cache(str(folder / f"{stem}.json"))
    assert not marker.exists()

    (folder / "not_datum.pkl").write_bytes(pickle.dumps({"train": [1, 2]}))
    with pytest.raises(UserError, match="not a few-shot cache"):
        load_fewshot_cache(str(folder / "not_datum.json"))


# ---------------------------------------------------------------- transforms


@pytest.fixture
def cfg():
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (8, 8)
    cfg.INPUT.GB_K = 3
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def _types(tfm):
    return [type(t) for t in tfm.transforms]


def test_train_transform_follows_the_fixed_order(cfg, capsys):
    cfg.INPUT.TRANSFORMS = ["normalize", "random_flip", "random_resized_crop"]
    cfg.INPUT.INTERPOLATION = "bicubic"
    tfm = build_transform(cfg, is_train=True)
    assert _types(tfm) == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    assert tfm.transforms[0].interpolation == T.InterpolationMode.BICUBIC
    assert tfm.transforms[0].scale == (0.08, 1.0)
    assert "Building transform_train" in capsys.readouterr().out

    everything = ["instance_norm", "gaussian_noise", "cutout", "gaussian_blur", "randomgrayscale", "colorjitter",
                  "randaugment", "svhn_policy", "cifar10_policy", "imagenet_policy", "random_flip",
                  "random_translation", "center_crop", "normalize"]
    tfm = build_transform(cfg, is_train=True, choices=everything)
    assert _types(tfm) == [
        T.Resize, Random2DTranslation, T.RandomHorizontalFlip, T.AutoAugment, T.AutoAugment, T.AutoAugment,
        T.RandAugment, T.ColorJitter, T.RandomGrayscale, T.RandomApply, T.ToTensor, Cutout, T.Normalize,
        GaussianNoise, InstanceNormalization,
    ]
    policies = [t.policy for t in tfm.transforms[3:6]]
    assert policies == [T.AutoAugmentPolicy.IMAGENET, T.AutoAugmentPolicy.CIFAR10, T.AutoAugmentPolicy.SVHN]
    assert (tfm.transforms[6].num_ops, tfm.transforms[6].magnitude) == (2, 10)
    image = Image.new("RGB", (11, 9), (120, 30, 200))
    assert tfm(image).shape == (3, 8, 8)

    cropped = build_transform(cfg, is_train=True, choices=["random_crop"])
    assert _types(cropped) == [T.RandomCrop, T.ToTensor] and cropped.transforms[0].padding == 4


def test_test_transform_resizes_center_crops_and_normalizes(cfg):
    cfg.INPUT.SIZE = (6, 8)
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize", "instance_norm"]
    tfm = build_transform(cfg, is_train=False)
    assert _types(tfm) == [T.Resize, T.CenterCrop, T.ToTensor, T.Normalize, InstanceNormalization]
    assert tfm.transforms[0].size == 8 and tuple(tfm.transforms[1].size) == (6, 8)
    assert tfm(Image.new("RGB", (20, 10))).shape == (3, 6, 8)
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None and build_transform(cfg, is_train=False) is None


def test_transform_errors_name_the_valid_choices(cfg):
    with pytest.raises(UserError, match="random_flip"):
        build_transform(cfg, choices=["random_flipp"])
    with pytest.raises(UserError, match="use 'randaugment'"):
        build_transform(cfg, choices=["randaugment2"])
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(UserError, match="bicubic"):
        build_transform(cfg, choices=[])


def test_tensor_transforms():
    torch.manual_seed(0)
    img = torch.rand(3, 8, 8) + 1
    assert (Cutout(1, 4)(img) == 0).sum() >= 3 * 4  # at least a 2x2 hole on every channel
    normed = InstanceNormalization()(img)
    assert torch.allclose(normed.flatten(1).mean(1), torch.zeros(3), atol=1e-5)
    random.seed(0)
    outs = [GaussianNoise(0.0, 0.5)(img) for _ in range(20)]
    assert any(torch.equal(o, img) for o in outs) and any(not torch.equal(o, img) for o in outs)
    assert Random2DTranslation(6, 5)(Image.new("RGB", (10, 10))).size == (5, 6)


# ---------------------------------------------------------------- samplers


def test_samplers():
    items = [Datum(f"/{i}.png", label=i % 4, domain=i % 2) for i in range(16)]
    with pytest.raises(UserError, match="RandomSampler"):
        build_sampler("Shuffled", data_source=items)
    assert list(build_sampler("SequentialSampler", data_source=items)) == list(range(16))
    assert sorted(build_sampler("RandomSampler", data_source=items)) == list(range(16))

    state = random.getstate()
    domain_sampler = build_sampler("RandomDomainSampler", data_source=items, batch_size=4, n_domain=2)
    assert random.getstate() == state  # building (and sizing) the sampler leaves the global RNG alone
    idx = list(domain_sampler)
    assert len(idx) == len(domain_sampler) == 16 and sorted(idx) == list(range(16))
    assert all(sorted(items[i].domain for i in idx[b:b + 4]) == [0, 0, 1, 1] for b in range(0, 16, 4))

    seq = list(build_sampler("SeqDomainSampler", data_source=items, batch_size=4))
    assert [items[i].domain for i in seq[:4]] == [0, 0, 1, 1]

    cls = list(build_sampler("RandomClassSampler", data_source=items, batch_size=4, n_ins=2))
    assert len(cls) == 16 and all(items[a].label == items[b].label for a, b in zip(cls[::2], cls[1::2]))
    with pytest.raises(UserError, match="N_DOMAIN"):
        build_sampler("RandomDomainSampler", data_source=items, batch_size=3, n_domain=2)


# ---------------------------------------------------------------- DataManager


@DATASET_REGISTRY.register(force=True)
class TinyFakeData(DatasetBase):
    """3 classes of 8x8 PNGs: 4 train, 1 val and 2 test images per class (no val with SOURCE_DOMAINS ("noval",))."""

    def __init__(self, cfg):
        root = cfg.DATASET.ROOT
        splits = {"train": [], "val": [], "test": []}
        for label, name in enumerate(["ant", "bee", "cow"]):
            for split, n in (("train", 4), ("val", 1), ("test", 2)):
                for i in range(n):
                    path = os.path.join(root, name, f"{split}{i}.png")
                    if not os.path.exists(path):
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        Image.new("RGB", (8, 8), (40 * label, 10 * i, 90)).save(path)
                    splits[split].append(Datum(path, label, classname=name))
        check_image_files(splits["train"] + splits["val"] + splits["test"], root)
        val = [] if "noval" in cfg.DATASET.SOURCE_DOMAINS else splits["val"]
        super().__init__(train_x=splits["train"], val=val, test=splits["test"])


@pytest.fixture
def data_cfg(cfg, tmp_path):
    cfg.DATASET.NAME = "TinyFakeData"
    cfg.DATASET.ROOT = str(tmp_path)
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 5
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    return cfg


def test_data_manager_builds_loaders_and_batches(data_cfg, capsys):
    dm = DataManager(data_cfg)
    out = capsys.readouterr().out
    assert "TinyFakeData" in out and "# train_x" in out and "12" in out
    assert dm.num_classes == 3 and dm.classnames == ["ant", "bee", "cow"] and dm.lab2cname[2] == "cow"
    assert dm.num_source_domains == 0 and dm.train_loader_u is None and len(dm.val_loader.dataset) == 3

    batches = list(dm.train_loader_x)
    assert len(batches) == 2  # 12 images, batch 5, last partial batch dropped
    assert batches[0]["img"].shape == (5, 3, 8, 8) and batches[0]["label"].shape == (5,)
    assert "img0" not in batches[0]

    test_batches = list(dm.test_loader)
    assert [len(b["label"]) for b in test_batches] == [4, 2]  # evaluation keeps every image, in order
    assert torch.equal(test_batches[0]["index"], torch.arange(4))
    assert test_batches[0]["impath"][0] == dm.dataset.test[0].impath
    assert test_batches[1]["label"].tolist() == [2, 2] and test_batches[0]["domain"].tolist() == [0] * 4


def test_data_manager_options(data_cfg):
    data_cfg.DATASET.SOURCE_DOMAINS = ("noval",)  # the fake dataset then has no val split
    data_cfg.DATALOADER.K_TRANSFORMS = 2
    data_cfg.DATALOADER.RETURN_IMG0 = True
    data_cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 32  # more than the data: one smaller batch is kept
    data_cfg.VERBOSE = False
    dm = DataManager(data_cfg)
    assert dm.val_loader is None
    (batch,) = list(dm.train_loader_x)
    assert isinstance(batch["img"], list) and len(batch["img"]) == 2 and batch["img"][0].shape == (12, 3, 8, 8)
    assert batch["img0"].shape == (12, 3, 8, 8)
    assert next(iter(dm.test_loader))["img"].shape == (4, 3, 8, 8)  # one view at test time

    with pytest.raises(UserError, match="K_TRANSFORMS=2"):
        build_data_loader(data_cfg, "RandomSampler", dm.dataset.train_x, batch_size=4, tfm=None)
    data_cfg.DATALOADER.K_TRANSFORMS = 1
    loader = build_data_loader(data_cfg, "RandomSampler", dm.dataset.train_x, batch_size=4, tfm=None)
    assert loader.drop_last and not loader.persistent_workers
    data_cfg.DATALOADER.NUM_WORKERS = 1
    loader = build_data_loader(data_cfg, "SequentialSampler", dm.dataset.test, batch_size=4, is_train=False)
    assert not loader.persistent_workers and loader.num_workers == 1 and not loader.drop_last  # Dassl's default
    data_cfg.DATALOADER.PERSISTENT_WORKERS = True
    loader = build_data_loader(data_cfg, "SequentialSampler", dm.dataset.test, batch_size=4, is_train=False)
    assert loader.persistent_workers
    with pytest.raises(UserError, match="training split .* is empty"):
        build_data_loader(data_cfg, "RandomSampler", [], batch_size=4)


def test_unknown_dataset_name_suggests_registered_ones(data_cfg):
    data_cfg.DATASET.NAME = "TinyFakeDat"
    with pytest.raises(KeyError, match="TinyFakeData"):
        DataManager(data_cfg)


def epochs_of(cfg, epochs: int = 3) -> list[tuple[list[str], torch.Tensor]]:
    """(image order, first image's augmented pixels) of each epoch, the global RNG seeded as at start-up."""
    torch.manual_seed(7)
    loader = DataManager(cfg).train_loader_x
    seen = []
    for _ in range(epochs):
        batches = list(loader)
        seen.append(([p for b in batches for p in b["impath"]], batches[0]["img"][0]))
    return seen


def reference_epochs(cfg, epochs: int = 3) -> list[tuple[list[str], torch.Tensor]]:
    """The same epochs from plain torch DataLoaders built as Dassl builds them: a new loader iterator, and so new
    workers seeded from the global RNG, every epoch."""
    dm = DataManager(cfg)  # for the dataset and transform only; its loaders are not used
    torch.manual_seed(7)
    wrapper = dm.train_loader_x.dataset
    loader = torch.utils.data.DataLoader(wrapper, batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                                         sampler=torch.utils.data.RandomSampler(wrapper.data_source),
                                         num_workers=cfg.DATALOADER.NUM_WORKERS, drop_last=True)
    seen = []
    for _ in range(epochs):
        batches = list(loader)
        seen.append(([p for b in batches for p in b["impath"]], batches[0]["img"][0]))
    return seen


def test_data_order_and_augmentation_with_workers_follow_dassl_across_epochs(data_cfg):
    data_cfg.DATALOADER.NUM_WORKERS = 2
    ours, reference = epochs_of(data_cfg), reference_epochs(data_cfg)
    assert [order for order, _ in ours] == [order for order, _ in reference]
    for (_, image), (_, expected) in zip(ours, reference):
        assert torch.equal(image, expected)
    assert ours[0][0] != ours[1][0]  # each epoch has its own order

    data_cfg.DATALOADER.PERSISTENT_WORKERS = True  # faster, but the seeds are drawn once: other epochs from 2 on
    persistent = epochs_of(data_cfg)
    assert persistent[0][0] == ours[0][0] and torch.equal(persistent[0][1], ours[0][1])
    assert any(p[0] != o[0] or not torch.equal(p[1], o[1]) for p, o in zip(persistent[1:], ours[1:]))


def test_an_augmentation_key_without_its_transform_is_noted(capsys):
    cfg = get_cfg_default()
    cfg.INPUT.TRANSFORMS = ("random_flip", "colorjitter")
    cfg.INPUT.COLORJITTER_B, cfg.INPUT.CUTOUT_LEN = 0.9, 8
    build_transform(cfg, is_train=True)
    assert "Note: INPUT.CUTOUT_LEN has no effect" in capsys.readouterr().out  # colorjitter is chosen: used
