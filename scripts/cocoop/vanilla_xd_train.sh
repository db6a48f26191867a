#!/usr/bin/env bash
# Vanilla CoCoOp, cross-dataset / domain generalisation: train on all ImageNet classes.
# usage: bash scripts/cocoop/vanilla_xd_train.sh [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args imagenet "$@"
TRAINER=CoCoOp CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1} NCTX=${NCTX:-4} EPO=${EPO:-5}
for SEED in $SEEDS; do
    DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots_few_shots/nctx${NCTX}_csc_ctp/CTX_${NCTX}_epo_${EPO}/seed$SEED
    run_job train "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoCoOp/$CFG.yaml \
        TRAINER.COCOOP.N_CTX $NCTX OPTIM.MAX_EPOCH $EPO DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES all
done
