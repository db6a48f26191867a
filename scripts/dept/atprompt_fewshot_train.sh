#!/usr/bin/env bash
# DePT+ATPrompt, few-shot: train on all classes with each shot count in SHOTS (default 1 2 4 8 16); the final test, on the whole test set, is the result.
# usage: bash scripts/dept/atprompt_fewshot_train.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/dept.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
