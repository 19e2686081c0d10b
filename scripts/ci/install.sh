#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Python 3.11 (idempotent):
# the pinned torch/torchvision builds, the project with its dev extras, and the Debian packages some tests use
# (espeak-ng for real speech in the LJSpeech fixture; SLURM and munge for the sweep tests). Debian packages are
# installed only when running as root; otherwise the tests that need them are skipped with a reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

apt_packages=()
command -v espeak-ng >/dev/null 2>&1 || apt_packages+=(espeak-ng)
if ((${#apt_packages[@]})); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
    else
        echo "note: not root, so ${apt_packages[*]} not installed; the tests that need them will be skipped" >&2
    fi
fi
if [ "$(id -u)" = 0 ]; then
    bash scripts/ci/slurm.sh install
fi
