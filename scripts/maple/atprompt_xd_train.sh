#!/usr/bin/env bash
# MaPLe+ATPrompt, cross-dataset / domain generalisation: train on all ImageNet classes.
# usage: bash scripts/maple/atprompt_xd_train.sh [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/maple.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
