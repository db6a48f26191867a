#!/usr/bin/env bash
# Attribute search: which subset of a dataset's attribute bases suits it best (docs/Attribute_Search.md, step 2).
# usage: bash scripts/attribute_search/main.sh DATASET [DATA_ROOT] ["w1 w2 w3 w4 w5"]
#   "w1 ..." are the attribute bases, one quoted string (default: the paper's bases for DATASET);
#   EPO (default 40) and NCTX (soft tokens per block, default 4) come from the environment.
# (--help: the environment it reads; the jobs are declared in trainers/attribute_search.py)
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/run_protocol.py" "$0" "$@"
