"""``jes copy-files`` — the init container's job: copy task files into the writable /keptn.

The files arrive as a projected ConfigMap volume: regular paths are symlinks into a hidden
``..data`` folder that Kubernetes manages. Only the visible tree is copied, as real files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def copy_tree(source: str | Path, target: str | Path) -> int:
    """Copy every visible file under ``source`` to the same relative path under ``target``."""
    source, target = Path(source), Path(target)
    count = 0
    for folder, dirs, files in os.walk(source, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        relative = Path(folder).relative_to(source)
        for name in files:
            if name.startswith(".."):
                continue
            destination = target / relative / name
            destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(Path(folder) / name, destination)
            count += 1
    return count
