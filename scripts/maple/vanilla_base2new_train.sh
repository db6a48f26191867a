#!/usr/bin/env bash
# Vanilla MaPLe, base-to-novel: train on the base classes (the base accuracy is the final test in log.txt).
# Defaults are the MaPLe paper's (2 context tokens, 5 epochs), whose results the ATPrompt paper reports.
# usage: bash scripts/maple/vanilla_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=MaPLe CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx} NCTX=${NCTX:-2} EPO=${EPO:-5}
for SEED in $SEEDS; do
    DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    run_job train "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/MaPLe/$CFG.yaml \
        TRAINER.MAPLE.N_CTX $NCTX OPTIM.MAX_EPOCH $EPO DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES base
done
