#!/usr/bin/env bash
# Vanilla KgCoOp, base-to-novel: train on the base classes (the base accuracy is the final test in log.txt).
# usage: bash scripts/kgcoop/vanilla_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/kgcoop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
