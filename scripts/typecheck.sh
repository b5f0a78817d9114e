#!/usr/bin/env bash
# mypy --strict over the code, then over each test folder on its own: test folders reuse
# module names (conftest, test_config), which mypy refuses to see twice in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
mypy=.venv/bin/mypy
status=0
$mypy || status=1
while read -r dir; do
  $mypy "$dir" || status=1
done < <(find . -path ./.venv -prune -o -name 'test_*.py' -printf '%h\n' | sort -u)
exit $status
