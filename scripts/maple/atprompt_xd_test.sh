#!/usr/bin/env bash
# The original's name for scripts/maple/atprompt_xd_eval.sh: the same jobs.
# usage: bash scripts/maple/atprompt_xd_test.sh TARGET_DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/maple.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
