"""Runs an interop test inside the venv scripts/make-hf-venv.sh creates (the
pip peers: safetensors, huggingface_hub, numpy>=2, ml_dtypes), or skips it
(exit 77) when that venv is absent or lacks a peer."""
import os
import subprocess
import sys
from pathlib import Path

VENV_PYTHON = Path(os.environ.get("CKPT_HF_VENV", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                  / "ckpt" / "hf-venv")) / "bin" / "python"


def run_in_hf_venv(peers):
    """Re-executes the calling script with the venv's interpreter unless it
    already is that one; `peers` is the import statement that must succeed."""
    if Path(sys.prefix).resolve() == VENV_PYTHON.parent.parent.resolve():
        return
    if not VENV_PYTHON.exists() or subprocess.run([str(VENV_PYTHON), "-c", peers]).returncode != 0:
        print(f"skipped: no venv with the peers ({peers}) at {VENV_PYTHON}; run scripts/make-hf-venv.sh")
        sys.exit(77)
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
