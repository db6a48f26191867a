#!/usr/bin/env bash
# The original's name for scripts/coop/vanilla_base2new_train.sh: the same jobs.
# usage: bash scripts/coop/vanila_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/coop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
