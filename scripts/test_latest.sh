#!/usr/bin/env bash
# Canary: the newest versions pyproject.toml allows, in a throw-away venv, against the fast suite.
# .ci/run stays on the lock (scripts/constraints.txt); this shows what the next bump of the lock
# would change and whether the suite still passes on it.
#
#   bash scripts/test_latest.sh                 # build .venv-latest, diff its versions against the lock, run the fast suite
#   bash scripts/test_latest.sh --update-lock   # the same, then write its versions to the lock if the suite passed
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=scripts/constraints.txt
VENV=${VENV:-.venv-latest}
UPDATE_LOCK=0
[ "${1:-}" = "--update-lock" ] && UPDATE_LOCK=1

rm -rf "$VENV"
CONSTRAINTS= VENV="$VENV" SKIP_FASHION_MNIST=1 bash scripts/setup.sh

# The venv's versions in the lock's format: its two header lines, then name==version (torch without +cpu).
candidate="$VENV/constraints.txt"
{
  head -n 2 "$LOCK"
  "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v -E '^(-e |prompt.bench)' | sed -E 's/^(torch==[^+]+)\+.*/\1/'
} > "$candidate"
echo "== versions the canary resolved, against the lock ($LOCK):"
diff -u "$LOCK" "$candidate" && echo "(no difference)"

"$VENV/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider
if [ "$UPDATE_LOCK" = "1" ]; then
  cp "$candidate" "$LOCK"
  echo "the fast suite passed on the newest versions; $LOCK updated (review with: git diff $LOCK)"
fi
