#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every
# test, and ends with the line "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
# The real OneFlow for the `oneflow` suite (cached; 77: no Python 3.10 here, that test skips).
scripts/oneflow-venv.sh >/dev/null || [ $? -eq 77 ]
# safetensors and huggingface_hub from pip for the sharded-set interop (cached; without it that test skips).
scripts/make-hf-venv.sh >/dev/null || echo "test.sh: no Hugging Face venv (pip unreachable?); sharded_interop will skip" >&2
status=0
meson test -C build --print-errorlogs --num-processes 2 "$@" || status=$?
/usr/bin/python3 scripts/test_summary.py build/meson-logs/testlog.json || status=1
exit "$status"
