#!/usr/bin/env bash
# CoCoOp+AnchorOPT, base-to-novel: evaluate the trained models on the new classes.
# usage: bash scripts/cocoop/anchoropt_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# The jobs, their folders and the per-dataset settings are in tools/run_protocol.py and datasets/catalog.py.
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
