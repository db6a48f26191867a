#!/usr/bin/env bash
# Zero-shot CLIP with the hand-written template of the dataset, on its base, novel or all classes.
# usage: bash scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE ...]   (SUBSAMPLE: base new (default), all)
# Writes output/evaluation/ZeroshotCLIP/<cfg>_<subsample>/<dataset>/seed1, which tools/summarize.py reads.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$1" "${2:-}"
shift $(($# < 2 ? $# : 2))
CFG=${CFG:-vit_b16}
for SUBSAMPLE in ${*:-base new}; do
    run_job eval "$OUTPUT/evaluation/ZeroshotCLIP/${CFG}_$SUBSAMPLE/$DATASET/seed1" --root "$DATA" --seed 1 \
        --trainer ZeroshotCLIP --dataset-config-file configs/datasets/$DATASET.yaml \
        --config-file configs/trainers/CoOp/$CFG.yaml --eval-only DATASET.SUBSAMPLE_CLASSES "$SUBSAMPLE"
done
