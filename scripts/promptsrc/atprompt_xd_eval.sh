#!/usr/bin/env bash
# PromptSRC+ATPrompt, cross-dataset: evaluate the ImageNet-trained models on all classes of a target dataset.
# usage: bash scripts/promptsrc/atprompt_xd_eval.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/promptsrc.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
