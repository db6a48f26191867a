#!/usr/bin/env bash
# CoOp+AnchorOPT, stage II, cross-dataset / domain generalisation: evaluate the ImageNet model on DATASET.
# usage: bash scripts/coop/anchoropt_xd_eval.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# The jobs, their folders and the per-dataset settings are in tools/run_protocol.py and datasets/catalog.py.
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
