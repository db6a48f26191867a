#!/usr/bin/env bash
# KgCoOp+ATPrompt, base-to-novel: train on the base classes (the base accuracy is the final test in log.txt).
# WEIGHT (environment) is TRAINER.KGCOOP.W, the weight of the loss that keeps the prompt's class text
# features near the hand-written zero-shot ones.
# usage: bash scripts/kgcoop/atprompt_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/kgcoop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
