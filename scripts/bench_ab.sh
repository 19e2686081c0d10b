#!/usr/bin/env bash
# Compare this working tree with another commit on the same benchmark, in alternating runs.
#
#     bash scripts/bench_ab.sh 8cd2468 scripts/bench_optim.py --model resnet50 --steps 9
#     ROUNDS=3 bash scripts/bench_ab.sh HEAD~1 scripts/bench_step_overhead.py
#
# The VM this project is developed on drifts in speed over the hour, and the ratios of one build move with it
# (docs/benchmarks.md#optimizer-step-time), so two builds are compared only within one sitting: the other commit
# is checked out into a temporary git worktree, and the benchmark runs from it and from here in turn, ROUNDS times
# (default 2), each run on its own tree's code (PYTHONPATH). The worktree is removed at the end, also on error or
# Ctrl-C. Its numba kernels compile on its first run (cached in the worktree, which is removed with it).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: bash scripts/bench_ab.sh COMMIT SCRIPT [ARGS...]  (e.g. 8cd2468 scripts/bench_optim.py --model resnet50)" >&2
    exit 2
fi
rev=$1
shift
here=$(git rev-parse --show-toplevel)
if ! git -C "$here" rev-parse --verify --quiet "$rev^{commit}" > /dev/null; then
    echo "bench_ab: '$rev' is not a commit of $here (try a hash from git log)" >&2
    exit 2
fi
if [[ ! -f "$here/$1" ]]; then
    echo "bench_ab: no script '$1' in $here (give its path from the repository root)" >&2
    exit 2
fi
other=$(mktemp -d "${TMPDIR:-/tmp}/bench_ab.XXXXXX")
cleanup() {
    git -C "$here" worktree remove --force "$other" > /dev/null 2>&1 || rm -rf "$other"
    git -C "$here" worktree prune
}
trap cleanup EXIT
git -C "$here" worktree add --detach --quiet "$other" "$rev"
label=$(git -C "$here" rev-parse --short "$rev")

for round in $(seq 1 "${ROUNDS:-2}"); do
    for tree in "$other" "$here"; do
        name=$([[ $tree == "$other" ]] && echo "$label" || echo "this tree")
        echo "== round $round: $name ($(date +%H:%M:%S))"
        (cd "$tree" && PYTHONPATH="$tree" python "$@")
    done
done
