"""Classify images with a trained prompt: the top-k classes of each image with their probabilities.

    python tools/predict.py --model-dir RUN IMAGES_OR_FOLDERS [--classnames a b c | --classnames-file F]
                            [--topk K] [--output preds.csv]

RUN is the output folder of a training run (any method, with or without ATPrompt or AnchorOPT); everything the
model needs comes from its checkpoint, so no dataset is needed. The class names default to those the run was trained
on; any others can be given, e.g. the novel classes of base-to-novel (--classnames-file: one name per line).
Folders are searched for image files, recursively, in sorted order. Each image is printed with its top-k classes;
--output also writes them as CSV, one row per image and rank: image,rank,label,probability (rank 1 first).
A bad input is one `error:` line and exit status 2, as with train.py.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainers  # noqa: E402, F401  (registers the methods)
from dassl.utils import atomic_write  # noqa: E402
from dassl.utils.errors import UserError  # noqa: E402
from datasets.splits import IMAGE_EXTENSIONS  # noqa: E402
from trainers.classifier import load_classifier  # noqa: E402

CSV_COLUMNS = ("image", "rank", "label", "probability")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="the output folder of a training run")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders of them")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--classnames", nargs="+", metavar="NAME", help="the class names (default: the run's own)")
    names.add_argument("--classnames-file", metavar="FILE", help="a text file with one class name per line")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image (default: 5)")
    parser.add_argument("--output", metavar="CSV", help="also write the predictions to this CSV file")
    parser.add_argument("--load-epoch", type=int, help="the checkpoint of this epoch (default: best, else latest)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: a GPU when there is one)")
    return parser


def image_files(paths: list[str]) -> list[str]:
    """The image files named, folders replaced by the image files under them (sorted)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(str(p) for p in Path(path).rglob("*") if p.is_file()
                            and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not inside:
                raise UserError(f"{path} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            found += inside
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise UserError(f"{path}: no such image file or folder")
    return found


def class_names(args: argparse.Namespace) -> list[str] | None:
    if not args.classnames_file:
        return args.classnames
    try:
        lines = Path(args.classnames_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--classnames-file {args.classnames_file} cannot be read ({err}): give a text file with "
                        "one class name per line") from err
    return [line.strip() for line in lines if line.strip()]


def write_csv(path: str, rows: list[tuple[str, int, str, float]]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            table = csv.writer(f)
            table.writerow(CSV_COLUMNS)
            table.writerows((image, rank, label, f"{p:.6f}") for image, rank, label, p in rows)

    try:
        atomic_write(path, write)
    except OSError as err:
        raise UserError(f"--output {path}: cannot write it ({err.strerror}); choose another file") from err


def run(args: argparse.Namespace) -> None:
    if args.topk < 1 or args.batch_size < 1:
        raise UserError("--topk and --batch-size take an integer of at least 1")
    images = image_files(args.images)
    with contextlib.redirect_stdout(sys.stderr):  # what loading says goes to stderr; stdout holds the predictions
        classifier = load_classifier(args.model_dir, class_names(args), args.device, args.load_epoch,
                                     args.batch_size)
        top = classifier.top(images, args.topk)
    rows = []
    for image, labels in zip(images, top):
        print(f"{image}: " + ", ".join(f"{label} ({p:.2%})" for label, p in labels))
        rows += [(image, rank, label, p) for rank, (label, p) in enumerate(labels, start=1)]
    if args.output:
        write_csv(args.output, rows)
        print(f"Saved {len(rows)} rows to {args.output}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UserError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
