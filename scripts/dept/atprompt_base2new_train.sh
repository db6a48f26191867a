#!/usr/bin/env bash
# DePT+ATPrompt, base-to-novel: train on the base classes (the base accuracy is the final test in log.txt).
# WEIGHT (environment) overrides the paper's linear-probe weight w of the dataset.
# usage: bash scripts/dept/atprompt_base2new_train.sh DATASET [DATA_ROOT] [SEED ...]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/settings.sh"
parse_args "$@"
TRAINER=DePT_ATP CFG=${CFG:-vit_b16_ep10_bs4_lr35}
atp_settings "$DATASET"
for SEED in $SEEDS; do
    DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/CTX_${NCTX}_epo_${EPO}/seed$SEED
    run_job train "$DIR" --root "$DATA" --seed "$SEED" --trainer $TRAINER \
        --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/DePT/$CFG.yaml \
        TRAINER.COOP.N_CTX $NCTX TRAINER.LINEAR_PROBE.WEIGHT $WEIGHT TRAINER.ATPROMPT.USE_ATPROMPT True \
        TRAINER.ATPROMPT.N_ATT1 $NCTX TRAINER.ATPROMPT.N_ATT2 $NCTX TRAINER.ATPROMPT.N_ATT3 $NCTX \
        OPTIM.MAX_EPOCH $EPO DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES base
done
