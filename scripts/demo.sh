#!/usr/bin/env bash
# ATPrompt end to end on a CPU in a few minutes, with no download: zero-shot CLIP, CoOp, CoOp+ATPrompt and
# CoOp+AnchorOPT trained on the base classes of the generated AttributeWorld and evaluated on its novel classes, then
# the Base / Novel / HM table. The tiny CLIP in clip/weights was pretrained on this world (tools/pretrain_tiny_clip.py).
# usage: bash scripts/demo.sh [SEED ...]          (default seeds: 1 2 3)
# Environment: DATA (default ./data), OUTPUT (default ./output/demo), EPO (default 20), SHOTS (default 16),
#   SEARCH=1 also runs a short attribute search.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA=${DATA:-data} OUTPUT=${OUTPUT:-output/demo} CFG=world_tiny EPO=${EPO:-20} SHOTS=${SHOTS:-16}
SEEDS=${*:-1 2 3}
start=$SECONDS
quiet() { "$@" > /dev/null; }  # every run keeps its full log in its output folder

echo "== zero-shot CLIP"
quiet bash scripts/zsclip/zeroshot.sh attribute_world "$DATA"
echo "== CoOp (4 context tokens)"
quiet env NCTX=4 bash scripts/coop/vanilla_base2new_train.sh attribute_world "$DATA" $SEEDS
quiet env NCTX=4 bash scripts/coop/vanilla_base2new_test.sh attribute_world "$DATA" $SEEDS
echo "== CoOp+ATPrompt ([2] color [2] shape [2] <class>)"
quiet env NCTX=2 bash scripts/coop/atprompt_base2new_train.sh attribute_world "$DATA" $SEEDS
quiet env NCTX=2 bash scripts/coop/atprompt_base2new_test.sh attribute_world "$DATA" $SEEDS
echo "== CoOp+AnchorOPT (stage I: an anchor from the class descriptions; stage II: [P @ (4 ctx; anchor)] <class>)"
quiet bash scripts/coop/anchoropt_pretrain_anchor.sh attribute_world "$DATA" 1
quiet bash scripts/coop/anchoropt_eval_anchor.sh attribute_world "$DATA" 1     # the anchor prompt alone, novel classes
export ANCHOR="$OUTPUT/attribute_world/CoOp_Pretrain_Anchor/${CFG}_${SHOTS}shots/ACTX_1_EPO_${EPO}_MSE_1000.0/seed1"
quiet bash scripts/coop/anchoropt_base2new_train.sh attribute_world "$DATA" $SEEDS
quiet bash scripts/coop/anchoropt_base2new_test.sh attribute_world "$DATA" $SEEDS
if [ -n "${SEARCH:-}" ]; then
    echo "== attribute search (3 epochs)"
    quiet env EPO=3 bash scripts/attribute_search/main.sh attribute_world "$DATA"
fi

echo
python3 tools/summarize.py "$OUTPUT"
echo "Finished in $((SECONDS - start)) s; logs and checkpoints are under $OUTPUT"
