#!/usr/bin/env bash
# CoOp+AnchorOPT, stage I: learn the anchor on the base classes from LLM class descriptions (writes anchor.pth).
# usage: bash scripts/coop/anchoropt_pretrain_anchor.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/coop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
