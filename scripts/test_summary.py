"""Prints the closing line CI reads from Meson's JSON test log.

Usage: test_summary.py TESTLOG.json [LABEL:]
"""
import collections
import json
import sys

counts = collections.Counter()
with open(sys.argv[1], encoding="utf-8") as log:
    for line in log:
        if line.strip():
            counts[json.loads(line)["result"]] += 1
passed = counts["OK"] + counts["EXPECTEDFAIL"]
skipped = counts["SKIP"]
failed = sum(n for result, n in counts.items() if result not in ("OK", "EXPECTEDFAIL", "SKIP"))
label = sys.argv[2] + " " if len(sys.argv) > 2 else ""
print(f"{label}{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
