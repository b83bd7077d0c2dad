#!/usr/bin/env bash
# Creates (once) a Python 3.10 venv with the real OneFlow 0.9.0, cached outside
# the build tree, and a wrapper `bin/oneflow-python` that makes its CUDA
# libraries importable (OneFlow 0.9's cp310 wheel needs them even on CPU).
# Prints the wrapper's path. Exits 77 when no Python 3.10 exists here.
# With --installed-only it installs nothing: exits 77 unless the venv is ready.
set -euo pipefail
installed_only=false
[ "${1:-}" = "--installed-only" ] && installed_only=true

venv="${CKPT_ONEFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ckpt/oneflow-venv}"
wrapper="$venv/bin/oneflow-python"

if [ -x "$wrapper" ] && [ -f "$venv/.complete" ]; then
  echo "$wrapper"
  exit 0
fi

python310=""
# pyenv's shim exists even when 3.10 is not selected, so ask each candidate to run.
for candidate in "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.10*/bin/python3.10 \
    python3.10; do
  if "$candidate" -c 'import venv' >/dev/null 2>&1; then python310="$(command -v "$candidate")"; break; fi
done
if [ -z "$python310" ]; then
  echo "oneflow-venv: no Python 3.10 here (OneFlow 0.9.0 ships only cp310 wheels for Linux)" >&2
  exit 77
fi
if $installed_only; then
  echo "oneflow-venv: OneFlow 0.9.0 is not set up in $venv; run scripts/oneflow-venv.sh (scripts/test.sh does)" >&2
  exit 77
fi

echo "oneflow-venv: creating $venv with $python310 (downloads about 2 GB once)" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python310" -m venv "$venv"
"$venv/bin/python" -m pip install -q oneflow==0.9.0 "numpy<2" "nvidia-cudnn-cu11<9" nvidia-cublas-cu11 >&2

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$wrapper" <<WRAPPER
#!/usr/bin/env bash
# Runs the venv's Python with OneFlow's CUDA libraries importable and its log quiet.
export LD_LIBRARY_PATH="$site/nvidia/cudnn/lib:$site/nvidia/cublas/lib:$site/nvidia/cuda_nvrtc/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export GLOG_minloglevel=2
exec "$venv/bin/python" "\$@"
WRAPPER
chmod +x "$wrapper"
"$wrapper" -c 'import oneflow as flow; assert flow.__version__.startswith("0.9.0"), flow.__version__' >&2
touch "$venv/.complete"
echo "$wrapper"
