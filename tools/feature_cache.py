"""List or clear the feature cache (FEATURE_CACHE.DIR, dassl/engine/feature_cache.py).

    python tools/feature_cache.py [DIR]                            # one line per group, then the total
    python tools/feature_cache.py [DIR] --clear                    # remove every group
    python tools/feature_cache.py [DIR] --clear --older-than 30    # remove the groups unused for 30 days

DIR defaults to ~/.cache/atprompt/features. A group holds the features of one image encoder at one precision,
image pipeline and device; its last use is the last evaluation that read or wrote it. Clearing is safe while runs
use the cache: an entry that is gone is computed again. Only folders that are feature-cache groups are removed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dassl.engine.feature_cache import DEFAULT_DIR  # noqa: E402
from dassl.engine.feature_store import GROUP_FILE, group_summary  # noqa: E402

GROUP_NAME = re.compile(r"[0-9a-f]{32}")
ENTRY_FOLDER = re.compile(r"[0-9a-f]{2}")


def is_group(folder: str) -> bool:
    """Named like a group, and holding its description or only entry folders (a run that stored entries into a
    group cleared meanwhile makes its folders again, without the description)."""
    if not GROUP_NAME.fullmatch(os.path.basename(folder)) or not os.path.isdir(folder):
        return False
    names = os.listdir(folder)
    return GROUP_FILE in names or all(ENTRY_FOLDER.fullmatch(n) and os.path.isdir(os.path.join(folder, n))
                                      for n in names)


def groups(root: str) -> list[str]:
    """The group folders under `root`."""
    if not os.path.isdir(root):
        return []
    return sorted(path for path in (os.path.join(root, name) for name in os.listdir(root)) if is_group(path))


def describe(folder: str, summary: dict) -> str:
    about = summary["description"].get("about", {})
    backbone = (about.get("backbone") or {}).get("name", "?")
    used = time.strftime("%Y-%m-%d %H:%M", time.localtime(summary["last_used"])) if summary["last_used"] else "?"
    return (f"{os.path.basename(folder)}  {backbone}  {summary['description'].get('precision', '?')}  "
            f"{summary['entries']} entries  {summary['bytes'] / 2**20:.1f} MiB  last used {used}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR, help=f"the cache folder (default {DEFAULT_DIR})")
    parser.add_argument("--clear", action="store_true", help="remove the groups (all, or those --older-than)")
    parser.add_argument("--older-than", type=float, default=0, metavar="DAYS",
                        help="with --clear: only the groups unused for more than DAYS days")
    args = parser.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.dir))
    found = groups(root)
    if not found:
        print(f"No feature-cache groups in {root}")
        return 0
    total_entries = total_bytes = removed = 0
    for folder in found:
        summary = group_summary(folder)
        stale = summary["age_days"] is None or summary["age_days"] > args.older_than
        if args.clear and stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
            print(f"removed {describe(folder, summary)}")
            continue
        total_entries += summary["entries"]
        total_bytes += summary["bytes"]
        print(describe(folder, summary))
    kept = len(found) - removed
    print(f"{root}: {kept} group(s), {total_entries} entries, {total_bytes / 2**20:.1f} MiB"
          + (f" ({removed} removed)" if args.clear else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
