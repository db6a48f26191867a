#!/usr/bin/env bash
# Vanilla MaPLe, base-to-novel: train on the base classes (the base accuracy is the final test in log.txt).
# Defaults are the MaPLe paper's (2 context tokens, 5 epochs), whose results the ATPrompt paper reports.
# usage: bash scripts/maple/vanilla_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/maple.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
