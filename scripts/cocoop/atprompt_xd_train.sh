#!/usr/bin/env bash
# CoCoOp+ATPrompt, cross-dataset / domain generalisation: train on all ImageNet classes.
# usage: bash scripts/cocoop/atprompt_xd_train.sh [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args imagenet "$@"
TRAINER=CoCoOp_ATP CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1} NCTX=${NCTX:-4} EPO=${EPO:-5}
for SEED in $SEEDS; do
    DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots_few_shots/nctx${NCTX}_csc_ctp/CTX_${NCTX}_epo_${EPO}/seed$SEED
    run_job train "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoCoOp/$CFG.yaml \
        TRAINER.COCOOP.N_CTX $NCTX TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.N_ATT1 $NCTX \
        TRAINER.ATPROMPT.N_ATT2 $NCTX TRAINER.ATPROMPT.N_ATT3 $NCTX \
        OPTIM.MAX_EPOCH $EPO DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES all
done
