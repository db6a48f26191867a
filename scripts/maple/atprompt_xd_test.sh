#!/usr/bin/env bash
# The original's name for scripts/maple/atprompt_xd_eval.sh: the same jobs.
# usage: bash scripts/maple/atprompt_xd_test.sh TARGET_DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# The jobs, their folders and the per-dataset settings are in tools/run_protocol.py and datasets/catalog.py.
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
