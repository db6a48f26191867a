#!/usr/bin/env bash
# Vanilla CoCoOp, cross-dataset / domain generalisation: train on all ImageNet classes.
# usage: bash scripts/cocoop/vanilla_xd_train.sh [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/cocoop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
