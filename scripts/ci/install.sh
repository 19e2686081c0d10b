#!/usr/bin/env bash
# Installs what a target needs on a fresh Debian machine with Python 3.11 (idempotent).
#
#   scripts/ci/install.sh demo   the pinned torch build and the project with its `demo` extra: what `make demo`
#                                runs (train.py on the digits task, the demo table); nothing else
#   scripts/ci/install.sh test   (the default) the pinned torch/torchvision builds, the project with its `dev`
#                                extras, and the Debian packages some tests use (espeak-ng for real speech in the
#                                LJSpeech fixture; SLURM and munge for the sweep tests)
#
# Debian packages are installed only when running as root; otherwise the tests that need them are skipped with a
# reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
pip_install() {
    python -m pip install --quiet --disable-pip-version-check "$@"
}
case "${1:-test}" in
    demo)
        pip_install torch==2.14.1
        pip_install -e ".[demo]"
        exit 0
        ;;
    test)
        pip_install torch==2.14.1 torchvision==0.29.1
        pip_install -e ".[dev]"
        ;;
    *)
        echo "usage: $0 [demo|test] (got '$1')" >&2
        exit 2
        ;;
esac

if [ "$(id -u)" != 0 ]; then
    echo "note: not root, so espeak-ng and SLURM are not installed; the tests that need them will be skipped" >&2
    exit 0
fi
if ! command -v espeak-ng >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
fi
bash scripts/ci/slurm.sh install
