#!/usr/bin/env bash
# CoCoOp+AnchorOPT, base-to-novel: evaluate the trained models on the new classes.
# usage: bash scripts/cocoop/anchoropt_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/cocoop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
