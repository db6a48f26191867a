#!/usr/bin/env bash
# Attribute search: which subset of a dataset's attribute bases suits it best (docs/Attribute_Search.md, step 2).
# usage: bash scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]
#   DATASET    a configs/datasets/<DATASET>.yaml name, e.g. caltech101
#   DATA_ROOT  folder holding the datasets (default: $DATA, else ./data)
#   "w1 ..."   the attribute bases, one quoted space-separated string (default: the paper's bases for DATASET)
# Environment: EPO (epochs, default 40), NCTX (soft tokens per block, default 4), CFG (a configs/trainers/CoOp
#   config, default vit_b16), SHOTS, OUTPUT, PYTHON,
#   EXTRA_OPTS, FORCE=1 (see scripts/lib.sh).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
if [ $# -lt 1 ] || [ $# -gt 3 ]; then
    echo "usage: $0 DATASET [DATA_ROOT] [\"w1 w2 w3 w4 w5\"]" >&2
    exit 2
fi
parse_args "$1" "${2:-}"
TRAINER=AttributeCompute CFG=${CFG:-vit_b16} CSC=False CTP=end SEED=1
EPO=${EPO:-40}
NCTX=${NCTX:-4}
BASES=()
if [ -n "${3:-}" ]; then
    LIST=""
    for WORD in $3; do
        LIST+="${LIST:+, }'$WORD'"
    done
    BASES=(TRAINER.ATTRIBUTE_SEARCH.BASES "[$LIST]")
fi
DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/search_attribute
run_job train "$DIR" --root "$DATA" --seed $SEED --trainer $TRAINER \
    --dataset-config-file configs/datasets/$DATASET.yaml --config-file configs/trainers/CoOp/$CFG.yaml \
    TRAINER.COOP.N_CTX $NCTX TRAINER.COOP.CSC $CSC TRAINER.COOP.CLASS_TOKEN_POSITION $CTP \
    TRAINER.ATPROMPT.N_ATT1 $NCTX OPTIM.MAX_EPOCH $EPO TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE -1 \
    DATASET.NUM_SHOTS $SHOTS DATASET.SUBSAMPLE_CLASSES base "${BASES[@]}"
