"""``jes copy-files`` — the init container's job: copy task files into the writable /keptn.

The files arrive as a projected ConfigMap volume: regular paths are symlinks into a hidden
``..data`` folder that Kubernetes manages. Only the visible tree is copied, as real files. A file
too big for one ConfigMap arrives in pieces, ``.jes-parts/<path>/00000``, ``00001``...; they are
joined, in order, into ``<path>``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jes.runner.kubernetes.manifests import PARTS_DIR


def copy_tree(source: str | Path, target: str | Path) -> int:
    """Copy every visible file under ``source`` to the same relative path under ``target``."""
    source, target = Path(source), Path(target)
    count = _join_parts(source / PARTS_DIR, target)
    for folder, dirs, files in os.walk(source, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..") and not (Path(folder) == source and d == PARTS_DIR)]
        relative = Path(folder).relative_to(source)
        for name in files:
            if name.startswith(".."):
                continue
            destination = target / relative / name
            destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(Path(folder) / name, destination)
            count += 1
    return count



def _join_parts(parts: Path, target: Path) -> int:
    """Join every ``<path>/<number>`` folder of pieces under ``parts`` into ``target/<path>``."""
    count = 0
    for folder, dirs, files in os.walk(parts, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        pieces = sorted(name for name in files if name.isdigit())
        if not pieces:
            continue
        destination = target / Path(folder).relative_to(parts)
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with destination.open("wb") as joined:
            for piece in pieces:
                with (Path(folder) / piece).open("rb") as part:
                    shutil.copyfileobj(part, joined)
        count += 1
    return count
