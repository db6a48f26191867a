#!/usr/bin/env bash
# CoCoOp+ATPrompt, cross-dataset / domain generalisation: evaluate the ImageNet-trained models on all
# classes of a target dataset, with the context length they were trained with (the original evaluated with 2).
# The folder carries "_few_shots" like the training folder, so it never collides with the base-to-novel
# evaluation of the same dataset.
# usage: bash scripts/cocoop/atprompt_xd_eval.sh TARGET_DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=CoCoOp_ATP CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1} NCTX=${NCTX:-4} EPO=${EPO:-5}
for SEED in $SEEDS; do
    MODEL_DIR=$OUTPUT/imagenet/$TRAINER/${CFG}_${SHOTS}shots_few_shots/nctx${NCTX}_csc_ctp/CTX_${NCTX}_epo_${EPO}/seed$SEED
    DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots_few_shots/nctx${NCTX}_csc_ctp/$DATASET/seed$SEED
    run_job eval "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoCoOp/$CFG.yaml \
        --model-dir "$MODEL_DIR" --load-epoch "$EPO" --eval-only \
        TRAINER.COCOOP.N_CTX $NCTX TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.N_ATT1 $NCTX \
        TRAINER.ATPROMPT.N_ATT2 $NCTX TRAINER.ATPROMPT.N_ATT3 $NCTX \
        DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES all
done
