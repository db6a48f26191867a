#!/usr/bin/env bash
# MaPLe+ATPrompt, cross-dataset / domain generalisation: evaluate an ImageNet-trained model on all classes of a
# target dataset. The model keeps the attributes it was trained with (recorded in its checkpoint).
# usage: bash scripts/maple/atprompt_xd_eval.sh TARGET_DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=MaPLe_ATP CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets} NCTX=${NCTX:-4} EPO=${EPO:-2}
for SEED in $SEEDS; do
    MODEL_DIR=$OUTPUT/imagenet/$TRAINER/${CFG}_${SHOTS}shots_few_shots/nctx${NCTX}_csc_ctp/CTX_${NCTX}_epo_${EPO}/seed$SEED
    DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc_ctp_epo${EPO}/$DATASET/seed$SEED
    run_job eval "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/MaPLe/$CFG.yaml \
        --model-dir "$MODEL_DIR" --load-epoch "$EPO" --eval-only \
        TRAINER.MAPLE.N_CTX $NCTX TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.N_ATT1 $NCTX \
        TRAINER.ATPROMPT.N_ATT2 $NCTX TRAINER.ATPROMPT.N_ATT3 $NCTX \
        DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES all
done
