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
steps=9
if [ -n "${SEARCH:-}" ]; then steps=10; fi
export PYTHONUNBUFFERED=1  # each run's first lines arrive as it starts, so the seed it trains shows at once

# Every run keeps its full log in its output folder; the terminal shows which step runs, the seeds it has started
# and the time taken.
step=0
run_step() {  # run_step TITLE COMMAND...: step number, title, then each seed as COMMAND starts it
    local title=$1 begun=$SECONDS
    shift
    step=$((step + 1))
    printf '[%d/%d] %s:' "$step" "$steps" "$title"
    if ! "$@" | seeds_started; then
        printf '\nerror: step %d of the demo failed (%s); its runs keep their logs in their folders under %s\n' \
            "$step" "$title" "$OUTPUT" >&2
        exit 1
    fi
    printf ' (%d s; %d s in all)\n' $((SECONDS - begun)) $((SECONDS - start))
}
seeds_started() {  # reads train.py's output: " seed 1, 2, ..." as runs of new seeds start
    local line seed last= skipped=0
    while IFS= read -r line; do
        case $line in
            "Setting fixed seed: "*)
                seed=${line#Setting fixed seed: }
                if [ -z "$last" ]; then
                    printf ' seed %s' "$seed"
                elif [ "$seed" != "$last" ]; then
                    printf ', %s' "$seed"
                fi
                last=$seed ;;
            *"Skip this job") skipped=$((skipped + 1)) ;;
        esac
    done
    if [ "$skipped" -gt 0 ]; then
        printf ' %d run(s) done before' "$skipped"
    fi
}

echo "AttributeWorld demo, seeds $SEEDS: $steps steps (about 4 minutes on 2 CPU cores with the defaults); logs under" \
    "$OUTPUT"
world=""
[ -d "$DATA/attribute_world" ] || world=" (the world is generated first)"
run_step "zero-shot CLIP, base and novel classes$world" bash scripts/zsclip/zeroshot.sh attribute_world "$DATA"
run_step "CoOp (4 context tokens), training on the base classes" \
    env NCTX=4 bash scripts/coop/vanilla_base2new_train.sh attribute_world "$DATA" $SEEDS
run_step "CoOp, testing on the novel classes" \
    env NCTX=4 bash scripts/coop/vanilla_base2new_test.sh attribute_world "$DATA" $SEEDS
run_step "CoOp+ATPrompt ([2] color [2] shape [2] <class>), training" \
    env NCTX=2 bash scripts/coop/atprompt_base2new_train.sh attribute_world "$DATA" $SEEDS
run_step "CoOp+ATPrompt, testing" env NCTX=2 bash scripts/coop/atprompt_base2new_test.sh attribute_world "$DATA" $SEEDS
run_step "CoOp+AnchorOPT stage I: an anchor from the class descriptions" \
    bash scripts/coop/anchoropt_pretrain_anchor.sh attribute_world "$DATA" 1
run_step "the anchor prompt alone, novel classes" bash scripts/coop/anchoropt_eval_anchor.sh attribute_world "$DATA" 1
export ANCHOR="$OUTPUT/attribute_world/CoOp_Pretrain_Anchor/${CFG}_${SHOTS}shots/ACTX_1_EPO_${EPO}_MSE_1000.0/seed1"
run_step "CoOp+AnchorOPT stage II ([P @ (4 ctx; anchor)] <class>), training" \
    bash scripts/coop/anchoropt_base2new_train.sh attribute_world "$DATA" $SEEDS
run_step "CoOp+AnchorOPT, testing" bash scripts/coop/anchoropt_base2new_test.sh attribute_world "$DATA" $SEEDS
if [ -n "${SEARCH:-}" ]; then
    run_step "attribute search (3 epochs)" env EPO=3 bash scripts/attribute_search/main.sh attribute_world "$DATA"
fi

echo
python3 tools/summarize.py "$OUTPUT"
echo "Finished in $((SECONDS - start)) s; logs and checkpoints are under $OUTPUT"
