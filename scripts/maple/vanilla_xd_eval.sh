#!/usr/bin/env bash
# Vanilla MaPLe, cross-dataset / domain generalisation: evaluate the ImageNet-trained models on all classes of a target dataset (the model keeps the attributes it was trained with).
# usage: bash scripts/maple/vanilla_xd_eval.sh TARGET_DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# The jobs, their folders and the per-dataset settings are in tools/run_protocol.py and datasets/catalog.py.
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
