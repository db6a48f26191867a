#!/usr/bin/env bash
# Zero-shot CLIP with the hand-written template of the dataset, on its base, novel or all classes; writes
# output/evaluation/ZeroshotCLIP/<cfg>_<subsample>/<dataset>/seed1, which tools/summarize.py reads.
# usage: bash scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE ...]   (SUBSAMPLE: base new (default), all)
# (--help: the environment it reads; the jobs are declared in trainers/zsclip.py)
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
