#!/usr/bin/env bash
# DePT+ATPrompt, base-to-novel: evaluate the trained models on the novel classes, in their own folder under
# evaluation/ (the original wrote into the training folder).
# usage: bash scripts/dept/atprompt_base2new_test.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/settings.sh"
parse_args "$@"
TRAINER=DePT_ATP CFG=${CFG:-vit_b16_ep10_bs4_lr35}
atp_settings "$DATASET"
for SEED in $SEEDS; do
    MODEL_DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/$DATASET/seed$SEED
    run_job eval "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/DePT/$CFG.yaml \
        --model-dir "$MODEL_DIR" --load-epoch "$EPO" --eval-only \
        TRAINER.COOP.N_CTX $NCTX TRAINER.LINEAR_PROBE.WEIGHT $WEIGHT TRAINER.ATPROMPT.USE_ATPROMPT True \
        TRAINER.ATPROMPT.N_ATT1 $NCTX TRAINER.ATPROMPT.N_ATT2 $NCTX TRAINER.ATPROMPT.N_ATT3 $NCTX \
        DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES new
done
