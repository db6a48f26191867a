#!/usr/bin/env bash
# Vanilla DePT, base-to-novel: evaluate the trained models on the novel classes, in their own folder under
# evaluation/ (the original wrote into the training folder).
# usage: bash scripts/dept/vanilla_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=DePT CFG=${CFG:-vit_b16_ep20_bs4_lr35} NCTX=${NCTX:-4} EPO=${EPO:-20} WEIGHT=${WEIGHT:-0.7}
for SEED in $SEEDS; do
    MODEL_DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/$DATASET/seed$SEED
    run_job eval "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/DePT/$CFG.yaml \
        --model-dir "$MODEL_DIR" --load-epoch "$EPO" --eval-only \
        TRAINER.COOP.N_CTX $NCTX TRAINER.LINEAR_PROBE.WEIGHT $WEIGHT \
        DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES new
done
