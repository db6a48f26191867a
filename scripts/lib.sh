# Shared by the run scripts (sourced, not run): arguments, defaults, and running one job unless it is done.
#
# Every script takes: DATASET [DATA_ROOT] [SEED ...]
#   DATASET    a configs/datasets/<DATASET>.yaml name, e.g. caltech101
#   DATA_ROOT  folder holding the datasets (default: $DATA, else ./data)
#   SEED ...   seeds to run (default: 1 2 3 4 5)
# Environment: OUTPUT (output root, default ./output), SHOTS (default 16), PYTHON (default python3),
#   EPO / NCTX (override the paper's per-dataset values), EXTRA_OPTS (more KEY VALUE config options),
#   FORCE=1 (run even if the job already finished).

parse_args() {
    DATASET=${1:?"usage: $0 DATASET [DATA_ROOT] [SEED ...]"}
    DATA=${2:-${DATA:-data}}
    shift $(($# < 2 ? $# : 2))
    SEEDS=${*:-1 2 3 4 5}
    OUTPUT=${OUTPUT:-output}
    SHOTS=${SHOTS:-16}
    PYTHON=${PYTHON:-python3}
}

# finished KIND DIR : the folder's log shows a final result (for training: a test after "Finish training") that no
# later error line overrides.
finished() {
    cat "$2"/log.txt* 2>/dev/null | awk -v kind="$1" '
        /^Finish training/ { trained = 1 }
        /^\* accuracy:/ { if (kind == "eval" || trained) done = 1 }
        /^error:/ { done = 0 }
        END { exit !done }'
}

# run_job KIND DIR ARGS... : KIND is train or eval; skips a job that already finished (FORCE=1 runs it anyway).
run_job() {
    local kind=$1 dir=$2
    shift 2
    if [ -z "${FORCE:-}" ] && finished "$kind" "$dir"; then
        echo "Results are available in ${dir}. Skip this job"
        return 0
    fi
    # shellcheck disable=SC2086  # EXTRA_OPTS is a list of KEY VALUE words
    "$PYTHON" train.py --output-dir "$dir" "$@" ${EXTRA_OPTS:-}
}
