#!/usr/bin/env bash
# CoOp+AnchorOPT, stage II, base-to-novel: evaluate on the novel classes (normal and anchor branches averaged).
# usage: bash scripts/coop/anchoropt_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/coop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
