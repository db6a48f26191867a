#!/usr/bin/env bash
# Vanilla CoOp, base-to-novel: train on the base classes.
# usage: bash scripts/coop/vanilla_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=CoOp CFG=${CFG:-vit_b16} CSC=False CTP=end NCTX=${NCTX:-16} EPO=${EPO:-200}
for SEED in $SEEDS; do
    DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/CTX_${NCTX}_epo_${EPO}/seed$SEED
    run_job train "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoOp/$CFG.yaml \
        TRAINER.COOP.N_CTX $NCTX TRAINER.COOP.CSC $CSC TRAINER.COOP.CLASS_TOKEN_POSITION $CTP \
        OPTIM.MAX_EPOCH $EPO DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES base
done
