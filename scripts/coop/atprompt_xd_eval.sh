#!/usr/bin/env bash
# CoOp+ATPrompt, cross-dataset / domain generalisation: evaluate an ImageNet-trained model on all classes of a
# target dataset. The model keeps the attributes it was trained with (recorded in its checkpoint).
# usage: bash scripts/coop/atprompt_xd_eval.sh TARGET_DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
parse_args "$@"
TRAINER=CoOp_ATP CFG=${CFG:-vit_b16} CSC=False CTP=end NCTX=${NCTX:-4} EPO=${EPO:-10}
for SEED in $SEEDS; do
    MODEL_DIR=$OUTPUT/imagenet/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}_few_shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/$DATASET/seed$SEED
    run_job eval "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoOp/$CFG.yaml \
        --model-dir "$MODEL_DIR" --load-epoch "$EPO" --eval-only \
        TRAINER.COOP.N_CTX $NCTX TRAINER.COOP.CSC $CSC TRAINER.COOP.CLASS_TOKEN_POSITION $CTP \
        TRAINER.ATPROMPT.USE_ATPROMPT True TRAINER.ATPROMPT.N_ATT1 $NCTX TRAINER.ATPROMPT.N_ATT2 $NCTX \
        TRAINER.ATPROMPT.N_ATT3 $NCTX DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES all
done
