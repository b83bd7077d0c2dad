#!/usr/bin/env bash
# A nightly-style fuzz campaign: every target for MINUTES (default 10, at
# least 10) at the lowest CPU priority, then each target's executions and
# coverage. Findings land in build-fuzz/findings/<target>/ (a regression test
# for each, see RELIABILITY.md). Usage: scripts/fuzz-campaign.sh [MINUTES] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
shift || true
if [ "$minutes" -lt 10 ]; then
  echo "fuzz-campaign: a campaign runs at least 10 minutes per target (scripts/fuzz.sh is the short run)" >&2
  exit 2
fi
status=0
nice -n 19 scripts/fuzz.sh $((minutes * 60)) "$@" || status=$?
for log in build-fuzz/fuzz_*.log; do
  target=$(basename "$log" .log)
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  echo "campaign $target: ${coverage:-cov: ?}"
done
exit $status
