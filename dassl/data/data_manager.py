"""DataManager: the dataset, its transforms and its data loaders, built from the config."""

from __future__ import annotations

import functools
import os

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, Dataset

from dassl.config.checks import check_node
from dassl.engine import distributed
from dassl.utils import read_image
from dassl.utils.errors import UserError

from .datasets import build_dataset
from .identity import data_identity
from .samplers import build_sampler
from .transforms import build_transform, interpolation_mode


@functools.cache
def usable_workers(requested: int) -> int:
    """DATALOADER.NUM_WORKERS, at most one per CPU this process may use (the configs ask for 8, which a smaller
    machine only slows down); said once per run. Other worker counts draw other random augmentations."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if requested <= cpus:
        return requested
    print(f"Note: DATALOADER.NUM_WORKERS is {requested} but this machine has {cpus} CPU(s) for this run: using "
          f"{cpus} loader workers (set DATALOADER.NUM_WORKERS {cpus} to silence this)")
    return cpus


def build_data_loader(cfg, sampler_type: str = "SequentialSampler", data_source=None, batch_size: int = 64,
                      n_domain: int = 0, n_ins: int = 2, tfm=None, is_train: bool = True,
                      dataset_wrapper=None) -> DataLoader:
    """A DataLoader over ``data_source`` (a list of Datum) wrapped by ``dataset_wrapper`` (default DatasetWrapper)."""
    if is_train and not data_source:
        raise UserError(
            f"The training split of {cfg.DATASET.NAME!r} is empty; check DATASET.ROOT, the dataset layout "
            f"(docs/DATASETS.md), DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES."
        )
    sampler = build_sampler(sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size,
                            n_domain=n_domain, n_ins=n_ins)
    # A last partial batch is dropped in training only when at least one full batch exists.
    drop_last = is_train and len(data_source) >= batch_size
    if is_train and distributed.get_world_size() > 1:
        # Each process takes its slice of every global batch; the shards hold whole batches only.
        sampler, drop_last = distributed.RankShardSampler(sampler, batch_size), False
    wrapper = dataset_wrapper or DatasetWrapper
    num_workers = usable_workers(cfg.DATALOADER.NUM_WORKERS)
    return DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        # Off by default, as in Dassl: workers started afresh each epoch draw their seed from the global RNG then,
        # which is what gives the original's data order and augmentation from the second epoch on.
        persistent_workers=num_workers > 0 and cfg.DATALOADER.PERSISTENT_WORKERS,
    )


class DataManager:
    """Builds the dataset named by DATASET.NAME and its train_x / train_u / val / test loaders."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None) -> None:
        check_node(cfg.DATASET, "DATASET")
        check_node(cfg.DATALOADER, "DATALOADER")
        with distributed.main_process_first():  # rank 0 writes any split cache, the other processes read it
            dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        loader_cfg = cfg.DATALOADER
        x_cfg = loader_cfg.TRAIN_X
        self.train_loader_x = build_data_loader(
            cfg, sampler_type=x_cfg.SAMPLER, data_source=dataset.train_x, batch_size=x_cfg.BATCH_SIZE,
            n_domain=x_cfg.N_DOMAIN, n_ins=x_cfg.N_INS, tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper,
        )

        self.train_loader_u = None
        if dataset.train_u:
            u_cfg = x_cfg if loader_cfg.TRAIN_U.SAME_AS_X else loader_cfg.TRAIN_U
            self.train_loader_u = build_data_loader(
                cfg, sampler_type=u_cfg.SAMPLER, data_source=dataset.train_u, batch_size=u_cfg.BATCH_SIZE,
                n_domain=u_cfg.N_DOMAIN, n_ins=u_cfg.N_INS, tfm=tfm_train, is_train=True,
                dataset_wrapper=dataset_wrapper,
            )

        test_cfg = loader_cfg.TEST

        def eval_loader(data_source) -> DataLoader:
            return build_data_loader(cfg, sampler_type=test_cfg.SAMPLER, data_source=data_source,
                                     batch_size=test_cfg.BATCH_SIZE, tfm=tfm_test, is_train=False,
                                     dataset_wrapper=dataset_wrapper)

        self.val_loader = eval_loader(dataset.val) if dataset.val else None
        self.test_loader = eval_loader(dataset.test)

        self.dataset = dataset
        self.data_identity = data_identity(cfg)  # what decides the data read (dassl/data/identity.py)
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self.dataset.classnames

    def show_dataset_summary(self, cfg) -> None:
        dataset = self.dataset
        rows = [("Dataset", cfg.DATASET.NAME)]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(("Source", ", ".join(cfg.DATASET.SOURCE_DOMAINS)))
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(("Target", ", ".join(cfg.DATASET.TARGET_DOMAINS)))
        rows.append(("# classes", f"{self.num_classes:,}"))
        rows.append(("# train_x", f"{len(dataset.train_x):,}"))
        if dataset.train_u:
            rows.append(("# train_u", f"{len(dataset.train_u):,}"))
        if dataset.val:
            rows.append(("# val", f"{len(dataset.val):,}"))
        rows.append(("# test", f"{len(dataset.test or ()):,}"))
        width = max(len(key) for key, _ in rows)
        print("\n".join(f"{key:<{width}}  {value}" for key, value in rows))


class DatasetWrapper(Dataset):
    """Reads and transforms one Datum into the batch dict the trainers expect.

    Keys: ``label``, ``domain``, ``impath``, ``index`` and ``img`` (a list of K views when
    DATALOADER.K_TRANSFORMS > 1 in training; ``img2``, ``img3``, ... when ``transform`` is a list of transforms),
    plus ``img0`` (resized, un-augmented) when DATALOADER.RETURN_IMG0 is set.
    """

    def __init__(self, cfg, data_source, transform=None, is_train: bool = False) -> None:
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        # Several augmented views of one image only make sense in training.
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise UserError(f"DATALOADER.K_TRANSFORMS={self.k_tfm} needs a train transform, but it is None; "
                            f"set K_TRANSFORMS to 1 or INPUT.NO_TRANSFORM to False")

        plain = [T.Resize(tuple(cfg.INPUT.SIZE), interpolation=interpolation_mode(cfg)),
                 T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            plain.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(plain)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._views(tfm, img0)
        else:
            output["img"] = self._views(self.transform, img0)

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _views(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views
