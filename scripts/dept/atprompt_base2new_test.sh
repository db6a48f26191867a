#!/usr/bin/env bash
# DePT+ATPrompt, base-to-novel: evaluate the trained models on the novel classes (own output folder).
# usage: bash scripts/dept/atprompt_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/dept.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
