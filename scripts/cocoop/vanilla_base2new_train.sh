#!/usr/bin/env bash
# Vanilla CoCoOp, base-to-novel: train on the base classes.
# With the default ctxv1 config the context is the 4 word-initialised tokens of "a photo of a" and N_CTX is
# ignored, so the folder says CTX_4; NCTX matters with a config without CTX_INIT, e.g. CFG=vit_b16_c4_ep10_batch1.
# usage: bash scripts/cocoop/vanilla_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=CoCoOp CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1} NCTX=${NCTX:-4} EPO=${EPO:-10}
for SEED in $SEEDS; do
    DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    run_job train "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoCoOp/$CFG.yaml \
        TRAINER.COCOOP.N_CTX $NCTX OPTIM.MAX_EPOCH $EPO DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES base
done
