"""Installs ckptio with `pip install .` into a venv and runs its pytest suite
(python/tests) against numpy, torch and safetensors.

The venv and meson-python's build directory are cached outside the build
tree ($CKPT_CACHE_DIR, else $XDG_CACHE_HOME/ckpt, else ~/.cache/ckpt), so a
second run only rebuilds what changed. The venv sees Debian's numpy and
torch (--system-site-packages); numpy is pinned to that version so pip never
replaces it. pip installs safetensors, ml_dtypes, pytest and meson-python;
pybind11 is Debian's (python3-pybind11). Exits with pytest's status."""
import hashlib
import os
import subprocess
import sys

import numpy

SOURCE = os.environ["CKPT_SOURCE_ROOT"]
REQUIREMENTS = ["meson-python>=0.13", "pytest", "safetensors", "ml_dtypes"]


def cache_dir():
    base = os.environ.get("CKPT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ckpt")
    return base


def run(*command, **kwargs):
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)


def main():
    cache = cache_dir()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = os.path.join(cache, f"python-venv-{tag}")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "ckpt-requirements.txt")
    wanted = "\n".join(REQUIREMENTS + [f"numpy=={numpy.__version__}"])
    if not os.path.exists(stamp) or open(stamp).read() != wanted:
        run(sys.executable, "-m", "venv", "--system-site-packages", "--clear", venv)
        constraints = os.path.join(venv, "constraints.txt")
        with open(constraints, "w") as f:
            f.write(f"numpy=={numpy.__version__}\n")
        run(python, "-m", "pip", "install", "--quiet", "-c", constraints, *REQUIREMENTS)
        with open(stamp, "w") as f:
            f.write(wanted)
    # One build directory per checkout, reused: pip rebuilds incrementally.
    checkout = hashlib.sha256(os.path.realpath(SOURCE).encode()).hexdigest()[:12]
    build_dir = os.path.join(cache, f"python-build-{tag}-{checkout}")
    run(python, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--force-reinstall",
        f"--config-settings=build-dir={build_dir}", SOURCE)
    # Outside the source tree, so `import ckptio` is the installed package.
    done = subprocess.run([python, "-m", "pytest", "-v", "-p", "no:cacheprovider", os.path.join(SOURCE, "python", "tests")],
                          cwd=venv)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
