#!/usr/bin/env bash
# Creates (once) the virtual environment the Hugging Face interop tests run
# their peers in: safetensors, huggingface_hub, numpy and ml_dtypes (the
# judge of FP8 casts) from pip. It lives
# outside the build tree and is never needed to build; the tests that use it
# skip when it is absent. Prints the interpreter's path.
set -euo pipefail
venv="${CKPT_HF_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ckpt/hf-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import safetensors.numpy, huggingface_hub, numpy, ml_dtypes' 2>/dev/null; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check safetensors huggingface_hub numpy ml_dtypes >&2
fi
echo "$venv/bin/python"
