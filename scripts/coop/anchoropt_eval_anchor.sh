#!/usr/bin/env bash
# CoOp+AnchorOPT, stage I: evaluate the anchor prompt alone as a classifier on the novel classes.
# usage: bash scripts/coop/anchoropt_eval_anchor.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# The jobs, their folders and the per-dataset settings are in tools/run_protocol.py and datasets/catalog.py.
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
