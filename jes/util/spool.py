"""A task's files spooled to disk while its Job (or process) is created (:class:`TaskFiles`, a
value the stages pass: :mod:`jes.models` gives it with the others)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from jes import errors

#: The sizes of a task without files (one shared, never changed, mapping).
_NO_SIZES: Mapping[str, int] = MappingProxyType({})


class TaskFiles:
    """A task's ``files``, spooled to a folder while they were fetched — one file in memory at a
    time, never all of them — as ``root/<path relative to /keptn>``.

    The runner reads them while it creates the task (ConfigMaps, or the local files folder) and
    then calls :meth:`discard`: the folder goes at once, not when the task ends, and ``on_discard``
    tells whoever limits how many spools exist at a time.
    """

    __slots__ = ("_on_discard", "root", "sizes")

    def __init__(
        self,
        root: Path | None = None,
        sizes: Mapping[str, int] | None = None,
        *,
        on_discard: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.sizes: Mapping[str, int] = dict(sizes) if sizes else _NO_SIZES
        """Relative path → size in bytes, in path order."""
        self._on_discard = on_discard
        """Called once, at :meth:`discard` (the service frees the spool's file slot)."""

    def __bool__(self) -> bool:
        return bool(self.sizes)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def path(self, relative: str) -> Path:
        if self.root is None:
            raise errors.RunnerError("the task's files were discarded already")
        return self.root / relative

    def read(self, relative: str, offset: int = 0, length: int = -1) -> bytes:
        with self.path(relative).open("rb") as file:
            file.seek(offset)
            return file.read(length)

    def discard(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        on_discard, self._on_discard = self._on_discard, None
        if on_discard is not None:
            on_discard()

    @classmethod
    def of(cls, root: Path, contents: Mapping[str, bytes]) -> TaskFiles:
        """Spool ``contents`` (tests, small files) into ``root``."""
        for relative, content in contents.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return cls(root, {k: len(v) for k, v in sorted(contents.items())})
