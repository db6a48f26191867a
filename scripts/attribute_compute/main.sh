#!/usr/bin/env bash
# The original's name for scripts/attribute_search/main.sh: the same search.
# usage: bash scripts/attribute_compute/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]
# (--help: the environment it reads; the jobs are declared in trainers/attribute_search.py)
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
