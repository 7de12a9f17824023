#!/bin/sh
# Regenerates requirements.lock: every runtime dependency of jes (pyproject.toml [project]
# dependencies, transitively) pinned to an exact version with the sha256 of every file PyPI has for
# it. The image installs exactly this (`pip install --require-hashes`), `make scan` too.
#
# Resolve with the Python version of the image (Dockerfile: python:3.11) so that version markers
# match. Needs python3 and PyPI; uses pip-tools in a throwaway virtualenv.
#
# Usage: sh scripts/lock.sh            (run from anywhere; writes requirements.lock at the top)
set -eu

PIP_TOOLS_VERSION=7.6.2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}

case $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') in
    3.11) ;;
    *) echo "lock.sh: use Python 3.11 (the image's); set PYTHON=/path/to/python3.11" >&2; exit 1 ;;
esac

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

"$PYTHON" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install --quiet --disable-pip-version-check "pip-tools==$PIP_TOOLS_VERSION"

# pip-compile runs in the project directory so the header names relative paths only
cd "$ROOT"
CUSTOM_COMPILE_COMMAND="sh scripts/lock.sh" "$TMP/venv/bin/pip-compile" \
    --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
    --resolver=backtracking --output-file requirements.lock pyproject.toml
echo "requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) pinned packages"
