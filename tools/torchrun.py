"""torchrun whose failed runs end with the cause: the failing process's one `error:` line comes last.

    python tools/torchrun.py --standalone --nproc_per_node=4 train.py --root DATA ...   (torchrun's arguments)

It runs torchrun itself (torch.distributed.run). A train.py process that fails on bad input prints one `error:` line
and hands it to torchrun (dassl/engine/distributed.py, `report_failure`); plain torchrun then prints its failure
summary with its own traceback after that line, so the cause scrolls away. Here the summary comes without the
launcher's traceback, followed by that line, and the exit status is the failing process's (2 for bad input).
"""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def error_line(failed: ChildFailedError) -> str | None:
    """The `error:` line the first failing process reported, if it reported one."""
    message = failed.get_first_failure()[1].message
    if isinstance(message, dict):  # torch's format: {"message": ..., "extraInfo": {...}}
        message = message.get("message")
    return message if isinstance(message, str) and message.startswith("error: ") else None


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except ChildFailedError as failed:
        print(str(failed).strip("\n"), file=sys.stderr)
        line = error_line(failed)
        if line is not None:
            print(line, file=sys.stderr)
        exitcode = failed.get_first_failure()[1].exitcode
        return exitcode if exitcode > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
