#!/usr/bin/env bash
# Vanilla DePT, base-to-novel: train on the base classes (20 epochs, as the config; the original left EPO unset).
# usage: bash scripts/dept/vanilla_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=DePT CFG=${CFG:-vit_b16_ep20_bs4_lr35} NCTX=${NCTX:-4} EPO=${EPO:-20} WEIGHT=${WEIGHT:-0.7}
for SEED in $SEEDS; do
    DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    run_job train "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/DePT/$CFG.yaml \
        TRAINER.COOP.N_CTX $NCTX TRAINER.LINEAR_PROBE.WEIGHT $WEIGHT OPTIM.MAX_EPOCH $EPO \
        DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES base
done
