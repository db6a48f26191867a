#!/usr/bin/env bash
# MaPLe+ATPrompt, base-to-novel: evaluate the trained models on the novel classes (own output folder; the epoch
# count is part of it, so evaluations of 5- and 10-epoch models do not overwrite each other).
# usage: bash scripts/maple/atprompt_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/settings.sh"
parse_args "$@"
TRAINER=MaPLe_ATP CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx}
maple_settings "$DATASET"
for SEED in $SEEDS; do
    MODEL_DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc_ctp_epo${EPO}/$DATASET/seed$SEED
    run_job eval "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/MaPLe/$CFG.yaml \
        --model-dir "$MODEL_DIR" --load-epoch "$EPO" --eval-only \
        TRAINER.MAPLE.N_CTX $NCTX TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.N_ATT1 $NCTX \
        TRAINER.ATPROMPT.N_ATT2 $NCTX TRAINER.ATPROMPT.N_ATT3 $NCTX \
        DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES new
done
