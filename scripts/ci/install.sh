#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Python 3.11 (idempotent):
# the pinned torch/torchvision builds, the project with its dev extras, and the Debian packages some tests use
# (espeak-ng for real speech in the LJSpeech fixture; SLURM and munge for the sweep tests). Debian packages are
# installed only when running as root; otherwise the tests that need them are skipped with a reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

if [ "$(id -u)" != 0 ]; then
    echo "note: not root, so espeak-ng and SLURM are not installed; the tests that need them will be skipped" >&2
    exit 0
fi
if ! command -v espeak-ng >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
fi
bash scripts/ci/slurm.sh install
