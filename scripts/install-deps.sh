#!/usr/bin/env bash
# Installs the Debian packages the build, the demo and the tests need,
# skipping the apt run entirely when all are present already.
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config
  libprotobuf-dev protobuf-compiler libfmt-dev nlohmann-json3-dev doctest-dev zlib1g-dev libcli11-dev
  libopenblas-dev libblis-dev clang libclang-rt-14-dev
  python3 python3-numpy python3-torch python3-jsonschema python3-venv python3-pybind11 cmake
  dataset-fashion-mnist time
  libopenmpi-dev openmpi-bin python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
