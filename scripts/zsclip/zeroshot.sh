#!/usr/bin/env bash
# Zero-shot CLIP with the hand-written template of the dataset, on its base, novel or all classes.
# usage: bash scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE]   (SUBSAMPLE: all (default), base, new)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$1" "${2:-}"
SUBSAMPLE=${3:-all} CFG=${CFG:-vit_b16}
run_job eval "$OUTPUT/ZeroshotCLIP/$CFG/$DATASET/$SUBSAMPLE" --root "$DATA" --trainer ZeroshotCLIP \
    --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoOp/$CFG.yaml \
    --eval-only DATASET.SUBSAMPLE_CLASSES "$SUBSAMPLE"
