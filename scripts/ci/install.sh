#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Python 3.11 (idempotent).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
