#!/usr/bin/env bash
# Decoding speed of another revision and of the working tree, measured in one run, alternately.
#
#   bash benchmarks/compare_revisions.sh REV [decode_speed.py arguments ...]
#
# REV is checked out into a temporary git worktree; both trees run their own
# benchmarks/decode_speed.py with the same arguments and this checkout's virtualenv, twice
# each, alternating (REV, here, REV, here), so drifting machine load hits both alike.
# Reports go to reports/decode_speed-REV-N.json and reports/decode_speed-here-N.json.
set -euo pipefail
rev=${1:?usage: compare_revisions.sh REV [decode_speed.py arguments]}
shift
here=$(git rev-parse --show-toplevel)
python="$here/.venv/bin/python"
base=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$base/tree" >/dev/null 2>&1 || true; rm -rf "$base"' EXIT
git -C "$here" worktree add --detach --quiet "$base/tree" "$rev"
mkdir -p "$here/reports"
for round in 1 2; do
  for side in "$rev" here; do
    tree=$here
    [ "$side" = here ] || tree=$base/tree
    echo "== $side, round $round"
    # The tree's own packages first (the virtualenv's editable install points at this checkout);
    # run from here, so relative paths in the arguments mean the same for both.
    PYTHONPATH="$tree" "$python" "$tree/benchmarks/decode_speed.py" "$@" \
      --report "$here/reports/decode_speed-${side}-${round}.json"
  done
done
