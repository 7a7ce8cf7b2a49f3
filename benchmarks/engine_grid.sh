#!/usr/bin/env bash
# The engine grid of BENCHMARKS.md ("Engine"): every regime x scenario, seeds from 10,
# every method, one process per regime. Each regime writes OUTDIR/REGIME.json and a log whose
# first and last lines give the commit, the time and the load average.
#
#   benchmarks/engine_grid.sh OUTDIR REGIME...   # regimes: mnist1d-default mnist1d-hard digits images
#   python -m unlearning.bench --headline --render OUTDIR/digits.json   # the table
#   METHODS=retrain,default benchmarks/engine_grid.sh OUTDIR ...          # the speed pass only
set -euo pipefail
out=$1
shift
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- unlearning || commit="$commit+uncommitted"
for regime in "$@"; do
    case $regime in
        images) scenarios=class:7,random:0.1,most:7:0.9+0.05 seeds=3 ;;
        *) scenarios=class:7,random:0.05,random:0.1,random:0.2,subjects:20,most:7:0.9+0.05,class:7+5 seeds=5 ;;
    esac
    cmd=("$py" -m unlearning.bench --threads 1 --regime "$regime" --scenario "$scenarios"
        --seeds "$seeds" --seed-offset 10 --json "$out/$regime.json")
    [ -n "${METHODS:-}" ] && cmd+=(--methods "$METHODS")
    log=$out/$regime.log
    echo "# commit $commit start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >"$log"
    echo "# cmd: ${cmd[*]}" >>"$log"
    "${cmd[@]}" >>"$log" 2>&1
    echo "# end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
done
