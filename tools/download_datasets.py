"""Fetch the benchmarks the authors share on the Hugging Face hub, unpack them where the readers look for them, and
check that each reader opens its dataset.

    python tools/download_datasets.py caltech101 dtd --root DATA      # download, unpack, check
    python tools/download_datasets.py all --root DATA                 # the 14 datasets the authors share
    python tools/download_datasets.py all --root DATA --from ZIPS     # zips copied by hand into the folder ZIPS

NAME is a dataset's config key (configs/datasets/NAME.yaml) or `all`. The zips come from the authors' repository
(datasets/catalog.py: ARCHIVE_REPO and each dataset's `archive`) through huggingface_hub, which shows progress and
resumes an interrupted download in DATA/.downloads; each download is checked against the SHA-256 the hub lists for
it and deleted once unpacked (--keep-zips keeps it). With --from the zips are read from ZIPS and checked against
ZIPS/SHA256SUMS where it lists them (as `sha256sum *.zip > SHA256SUMS` writes it); otherwise their SHA-256 is
printed, to compare with the hub's page of the file.

A zip is unpacked beside its target and moved into place only when the reader opens it, so a damaged zip leaves
nothing behind (one without its split file is moved in, and the error names the file to add), and data already in
place is checked and never replaced. Every dataset ends in one line: its classes and image counts, or `error:` with
what is wrong and what to do. ImageNet is not shared (its licence): asking for it says where to get it.
docs/DATASETS.md shows every layout.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import io
import os
import shutil
import sys
import zipfile
import zlib
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402,F401  (registers the readers)
from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, build_dataset  # noqa: E402
from dassl.utils.errors import UserError  # noqa: E402
from datasets import catalog  # noqa: E402
from datasets.catalog import DatasetInfo  # noqa: E402
from datasets.imagenet import ImageNetVariant  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "datasets"
HUB_PAGE = f"https://huggingface.co/{catalog.ARCHIVE_REPO}"
DOWNLOADS = ".downloads"  # under DATA: zips fetched from the hub, until they are unpacked
SUMS_FILE = "SHA256SUMS"
# Left out when unpacking: macOS metadata, and few-shot caches drawn on another machine (they name the images by
# that machine's paths; the readers draw the shots again from the split file and the seed, in the original's order).
SKIPPED = {"__MACOSX", ".DS_Store", "split_fewshot"}
SEARCH_DEPTH = 3  # how many folders deep in a zip the dataset folder may sit
IMAGENET_HELP = ("ImageNet is not in the authors' repository (its licence allows no copies): download the "
                 "ILSVRC-2012 train and val images from https://image-net.org, lay them out as "
                 "{root}/imagenet/images/{{train,val}}/<wnid>/*.JPEG with classnames.txt beside images/ "
                 "(docs/DATASETS.md#imagenet), then run this again to check it")


# ----- names ----------------------------------------------------------------------------------------------------------
def choose(names: list[str]) -> list[DatasetInfo]:
    """The catalog rows of `names` in order, without repeats; `all` is every dataset the authors share."""
    valid = {info.key: info for info in catalog.DATASETS if info.role in ("benchmark", "variant")}
    chosen: list[DatasetInfo] = []
    for name in names:
        if name == "all":
            rows = [info for info in valid.values() if info.archive]
        elif name in valid:
            rows = [valid[name]]
        else:
            close = difflib.get_close_matches(name, valid, n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise UserError(f"unknown dataset '{name}'.{hint} Valid names: {', '.join(valid)}, all")
        chosen += [row for row in rows if row not in chosen]
    return chosen


# ----- what the readers expect ----------------------------------------------------------------------------------------
def reader_of(info: DatasetInfo) -> type[DatasetBase]:
    return DATASET_REGISTRY.get(info.name)


def index_file(reader: type[DatasetBase]) -> str | None:
    """The file that fixes a dataset's classes and split: its split_zhou_*.json, ImageNet's classnames.txt for the
    variants, or none (FGVC-Aircraft reads the official lists)."""
    if issubclass(reader, ImageNetVariant):
        return "classnames.txt"
    return getattr(reader, "split_file", None)


def landmarks(reader: type[DatasetBase]) -> set[str]:
    """Names that mark the dataset folder inside a zip: the reader's image folder(s) and its index file."""
    names = set(getattr(reader, "image_dirs", None) or [getattr(reader, "image_dir", "")])
    return (names | {index_file(reader) or ""}) - {""}


def index_problem(folder: str, reader: type[DatasetBase]) -> str | None:
    """What is wrong when the dataset folder lacks its index file, else None. Lacking a split file, the reader
    would make a new split, so the folder is refused before the reader opens it."""
    index = index_file(reader)
    if not index or os.path.isfile(os.path.join(folder, index)):
        return None
    if index == "classnames.txt":
        fix = "copy ImageNet's classnames.txt there (docs/DATASETS.md#imagenet)"
    else:
        fix = ("without it the reader would make a split of its own, not the published one; put the published file "
               "there (CoOp's split files, linked from docs/DATASETS.md)")
    return f"{os.path.join(folder, index)} is missing: {fix}, then run this again to check it"


def open_dataset(root: str, info: DatasetInfo) -> DatasetBase:
    """The reader of `info` on DATASET.ROOT `root`, configured from its dataset yaml as train.py does, on the full
    split: NUM_SHOTS -1 draws no few shots and writes no cache. The reader's progress lines are kept quiet."""
    cfg = get_cfg_default()
    cfg.merge_from_file(str(CONFIGS / f"{info.key}.yaml"))
    cfg.DATASET.ROOT = root
    cfg.DATASET.NUM_SHOTS = -1
    with contextlib.redirect_stdout(io.StringIO()):
        return build_dataset(cfg)


def sizes(data: DatasetBase) -> str:
    if data.train_x is data.test:  # ImageNet's variants: one test set
        return f"{data.num_classes} classes, {len(data.test)} test images"
    return (f"{data.num_classes} classes, {len(data.train_x)} train / {len(data.val or [])} val / "
            f"{len(data.test)} test images")


def read_sizes(root: str, info: DatasetInfo) -> str:
    """The sizes of the dataset of `info` under `root`; if its reader fails, the error is the first line of why."""
    try:
        return sizes(open_dataset(root, info))
    except (UserError, OSError) as err:
        reason = err.message if isinstance(err, UserError) else str(err)
        raise UserError(reason.splitlines()[0].rstrip(":")) from err


# ----- where the zips come from ---------------------------------------------------------------------------------------
def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sums(folder: str) -> dict[str, str]:
    """File name -> SHA-256 from folder/SHA256SUMS, in `sha256sum`'s format ("<hex>  <name>" or "<hex> *<name>")."""
    path = os.path.join(folder, SUMS_FILE)
    if not os.path.isfile(path):
        return {}
    sums = {}
    with open(path) as file:
        for line in file:
            digest, _, name = line.strip().partition(" ")
            if name.strip():
                sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def zip_from_folder(folder: str, archive: str) -> str:
    """folder/archive, checked against folder/SHA256SUMS when that lists it, else with its SHA-256 printed."""
    path = os.path.join(folder, archive)
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: copy {archive} there from {HUB_PAGE}/blob/main/{archive}, or leave "
                        "out --from to download it")
    expected, actual = read_sums(folder).get(archive), sha256(path)
    if expected is None:
        print(f"{archive}: SHA-256 {actual} (not checked: {SUMS_FILE} in {folder} does not list it; compare it with "
              f"{HUB_PAGE}/blob/main/{archive})")
    elif actual != expected:
        raise UserError(f"{path} has SHA-256 {actual}, but {SUMS_FILE} lists {expected}: the copy is damaged or of "
                        f"another version; copy it again from {HUB_PAGE}")
    return path


def hub() -> ModuleType:
    """huggingface_hub, an optional package: only downloading needs it."""
    try:
        import huggingface_hub
    except ImportError as err:
        raise UserError("downloading from the Hugging Face hub needs the huggingface_hub package: run `pip install "
                        "huggingface_hub`, or copy the zips by hand into a folder and pass --from FOLDER") from err
    return huggingface_hub


def zip_from_hub(archive: str, downloads: str) -> str:
    """archive downloaded into `downloads` (resumed where an earlier run stopped) and checked against the SHA-256
    the hub lists; a download that does not match is deleted, so that the next run fetches it afresh."""
    hf = hub()
    repo, kind = catalog.ARCHIVE_REPO, catalog.ARCHIVE_REPO_TYPE
    try:
        # The download comes first: the client reports a network failure or a missing file as an OSError there.
        path = hf.hf_hub_download(repo, archive, repo_type=kind, local_dir=downloads)
        listed = hf.HfApi().get_paths_info(repo, [archive], repo_type=kind)
    except OSError as err:
        raise UserError(f"could not download {archive} from {HUB_PAGE} ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0]}); check the network and that the repository's file list "
                        f"({HUB_PAGE}/tree/main) still has {archive}, or copy the zip by hand into a folder and pass "
                        "--from FOLDER") from err
    expected = getattr(listed[0].lfs, "sha256", None) if listed else None
    print(f"{archive}: checking its SHA-256")
    actual = sha256(path)
    if expected is None:
        print(f"{archive}: SHA-256 {actual} (not checked: the hub lists none for it)")
    elif actual != expected:
        os.remove(path)
        raise UserError(f"the download of {archive} has SHA-256 {actual}, but the hub lists {expected}; it was "
                        "deleted: run this again to download it afresh")
    return path


# ----- unpacking ------------------------------------------------------------------------------------------------------
def unpack(zip_path: str, into: str) -> None:
    """Extract zip_path into the folder `into`; reading each member checks its CRC, so a truncated or damaged zip
    fails here."""
    os.makedirs(into)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [m for m in archive.infolist() if not SKIPPED.intersection(m.filename.split("/"))]
            need, free = sum(m.file_size for m in members), shutil.disk_usage(into).free
            if need > free:
                raise UserError(f"{zip_path} unpacks to {need / 1e9:.1f} GB, but only {free / 1e9:.1f} GB are free "
                                f"in {into}: make room, then run this again")
            for member in tqdm(members, desc=f"unpacking {os.path.basename(zip_path)}", unit="file", disable=None):
                archive.extract(member, into)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise UserError(f"{zip_path} is not a complete zip file ({err}): the download or copy was cut short or "
                        "damaged; delete it and fetch it again") from err


def find_dataset_folder(top: str, names: set[str]) -> str | None:
    """The shallowest folder under `top` (itself included) that holds one of `names`: zips differ in whether they
    wrap the dataset in a folder, and in that folder's name."""
    level = [top]
    for _ in range(SEARCH_DEPTH + 1):
        for folder in level:
            if names.intersection(os.listdir(folder)):
                return folder
        level = [os.path.join(folder, name) for folder in level for name in sorted(os.listdir(folder))
                 if os.path.isdir(os.path.join(folder, name))]
    return None


def install(root: str, info: DatasetInfo, zip_path: str) -> str:
    """Unpack zip_path into root/<its folder> through a staging folder beside it; return the dataset's sizes.

    Only a dataset the reader opens is moved into place. One lacking its split file is moved too (its images are
    fine, and that folder is where the file must go), and the missing file is then the error.
    """
    reader = reader_of(info)
    target = os.path.join(root, reader.dataset_dir)
    staging = os.path.join(root, f".{reader.dataset_dir}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted run left
    try:
        unpack(zip_path, os.path.join(staging, "zip"))
        found = find_dataset_folder(os.path.join(staging, "zip"), landmarks(reader))
        if found is None:
            raise UserError(f"{zip_path} holds no folder with {' or '.join(sorted(landmarks(reader)))}, so it is not "
                            f"{info.display} as the reader expects it ({reader.layout}); check that it is the right "
                            "file")
        unpacked = os.path.join(staging, reader.dataset_dir)
        os.rename(found, unpacked)
        if index_problem(unpacked, reader):
            os.rename(unpacked, target)
            raise UserError(index_problem(target, reader))
        try:
            summary = read_sizes(staging, info)
        except UserError as err:
            raise UserError(f"{zip_path} unpacks, but the reader does not open it ({err.message}); nothing was "
                            "installed") from err
        os.rename(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def fetch(root: str, info: DatasetInfo, mirror: str | None, keep_zips: bool) -> str:
    """Make the dataset of `info` ready under `root`; return the line that says what was done."""
    reader = reader_of(info)
    target = os.path.join(root, reader.dataset_dir)
    if os.path.lexists(target):
        if index_problem(target, reader):
            raise UserError(index_problem(target, reader))
        try:
            return f"already in {target}, left as it is ({read_sizes(root, info)})"
        except UserError as err:
            raise UserError(f"{target} is there, but the reader does not open it ({err.message}); fix that, or move "
                            "the folder away to unpack a fresh copy") from err
    if not info.archive:
        raise UserError(IMAGENET_HELP.format(root=root))
    if mirror:
        zip_path = zip_from_folder(mirror, info.archive)
    else:
        zip_path = zip_from_hub(info.archive, os.path.join(root, DOWNLOADS))
    summary = install(root, info, zip_path)
    if not mirror and not keep_zips:
        os.remove(zip_path)
    return f"unpacked into {target} ({summary})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", metavar="NAME", help="config keys of datasets (caltech101, ...) or all")
    parser.add_argument("--root", required=True, help="the data folder (DATASET.ROOT of the runs)")
    parser.add_argument("--from", dest="mirror", metavar="FOLDER", help="take the zips from FOLDER, not the hub")
    parser.add_argument("--keep-zips", action="store_true", help=f"keep the downloaded zips in ROOT/{DOWNLOADS}")
    args = parser.parse_args(argv)
    try:
        rows = choose(args.names)
        if args.mirror and not os.path.isdir(args.mirror):
            raise UserError(f"--from {args.mirror}: no such folder; pass the folder that holds the zips")
    except UserError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    root = os.path.abspath(os.path.expanduser(args.root))
    os.makedirs(root, exist_ok=True)
    failed = []
    for info in rows:
        try:
            print(f"{info.key}: {fetch(root, info, args.mirror, args.keep_zips)}")
        except UserError as err:
            print(f"error: {info.key}: {err.message}", file=sys.stderr)
            failed.append(info.key)
    if "all" in args.names and not os.path.exists(os.path.join(root, "imagenet")):
        print(f"note: {IMAGENET_HELP.format(root=root)}")
    if len(rows) > 1:
        print(f"{len(rows) - len(failed)} of {len(rows)} datasets ready" +
              (f"; failed: {', '.join(failed)} (see the errors above)" if failed else ""))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
