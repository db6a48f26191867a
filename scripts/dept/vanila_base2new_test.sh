#!/usr/bin/env bash
# The original's name for scripts/dept/vanilla_base2new_test.sh: the same jobs.
# usage: bash scripts/dept/vanila_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/dept.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
