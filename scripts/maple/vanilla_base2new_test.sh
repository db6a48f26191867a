#!/usr/bin/env bash
# Vanilla MaPLe, base-to-novel: evaluate the trained models on the novel classes (own output folder, per epoch
# count).
# Defaults are the MaPLe paper's (2 context tokens, 5 epochs), whose results the ATPrompt paper reports.
# usage: bash scripts/maple/vanilla_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=MaPLe CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx} NCTX=${NCTX:-2} EPO=${EPO:-5}
for SEED in $SEEDS; do
    MODEL_DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc_ctp_epo${EPO}/$DATASET/seed$SEED
    run_job eval "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/MaPLe/$CFG.yaml \
        --model-dir "$MODEL_DIR" --load-epoch "$EPO" --eval-only \
        TRAINER.MAPLE.N_CTX $NCTX DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES new
done
