#!/usr/bin/env bash
# Vanilla CoCoOp, base-to-novel: train on the base classes (the base accuracy is the final test in log.txt).
# With the default ctxv1 config the context is the 4 word-initialised tokens of "a photo of a" and N_CTX is
# ignored, so the folder says CTX_4; NCTX matters with a config without CTX_INIT, e.g. CFG=vit_b16_c4_ep10_batch1.
# usage: bash scripts/cocoop/vanilla_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]   (--help: the environment it reads)
# Its jobs, folders and per-dataset settings are declared in trainers/cocoop.py (python tools/run_protocol.py --list).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
