#!/usr/bin/env bash
# The README's test command: set everything up, then run the whole suite in its two tiers.
#  - the unit tier (every test not marked `integration`) on every core, through pytest-xdist;
#  - then the integration tier alone, one test at a time: each starts learners, actors or CLIs
#    that need the cores themselves (and wait for each other within bounded times).
# Extra arguments go to both. A tier that selects no test (pytest exit 5) is fine when the other
# ran tests; both selecting none fails, as a run that collects nothing must fail CI.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit $?
export OMP_NUM_THREADS=1 MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa HF_HUB_OFFLINE=1
pytest=(.venv/bin/python -m pytest tests -q -p no:cacheprovider)

"${pytest[@]}" -m "not integration" -n auto "$@"
unit=$?
"${pytest[@]}" -m integration "$@"
integration=$?

for status in "$unit" "$integration"; do
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
        exit "$status"
    fi
done
if [ "$unit" -eq 5 ] && [ "$integration" -eq 5 ]; then
    exit 5
fi
exit 0
