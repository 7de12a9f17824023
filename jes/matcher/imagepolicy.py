"""The image allowlist and the privileged-container guard.

Allowlist entries are globs as upstream used them (gobwas/glob without separators): ``*`` matches
any run of characters including ``/``, ``?`` one character, ``[AB]``/``[!AB]``/``[a-z]`` classes,
``{a,b}`` alternatives, ``\\`` escapes. They match the image string exactly as written in the
config: no registry or tag is added, so ``docker.io/*`` does not allow ``alpine``. An empty list,
or one containing ``*``, allows every image.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    regex, rest = _translate(pattern, 0, in_braces=False)
    if rest != len(pattern):  # pragma: no cover - _translate consumes everything at top level
        raise ValueError(f"invalid glob {pattern!r}")
    return re.compile(f"(?s:{regex})\\Z")


def _translate(pattern: str, i: int, *, in_braces: bool) -> tuple[str, int]:
    out: list[str] = []
    while i < len(pattern):
        char = pattern[i]
        if in_braces and char in ",}":
            return "".join(out), i
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            piece, i = _char_class(pattern, i)
            out.append(piece)
            continue
        elif char == "{":
            piece, i = _alternatives(pattern, i)
            out.append(piece)
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out), i


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    end = pattern.find("]", i + 2)
    if end < 0:
        return re.escape("["), i + 1
    body = pattern[i + 1 : end]
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    escaped = "".join("\\" + c if c in "\\^[]" else c for c in body)
    return ("[^" if negate else "[") + escaped + "]", end + 1


def _alternatives(pattern: str, i: int) -> tuple[str, int]:
    options = []
    i += 1
    while True:
        piece, i = _translate(pattern, i, in_braces=True)
        options.append(piece)
        if i >= len(pattern):
            return re.escape("{") + "".join(options), i  # unterminated: treat "{" literally
        if pattern[i] == "}":
            return "(?:" + "|".join(options) + ")", i + 1
        i += 1  # skip ","


def allows_everything(patterns: Iterable[str]) -> bool:
    items = [p for p in patterns if p]
    return not items or "*" in items


def allowed(image: str, patterns: Iterable[str]) -> bool:
    """True if ``image`` matches one of ``patterns`` (or the list allows everything)."""
    items = [p for p in patterns if p]
    if allows_everything(items):
        return True
    return any(compile_glob(p).match(image) for p in items)


def forbidden_message(image: str) -> str:
    """Upstream's wording, so existing dashboards and searches keep working."""
    return f"Forbidden: Image {image} does not match configured image allowlist.\n"
