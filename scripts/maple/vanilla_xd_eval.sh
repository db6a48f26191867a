#!/usr/bin/env bash
# Vanilla MaPLe, cross-dataset / domain generalisation: evaluate the ImageNet-trained models on all classes of a target dataset.
# usage: bash scripts/maple/vanilla_xd_eval.sh TARGET_DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/maple.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
