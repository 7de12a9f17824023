"""Strict YAML reading that remembers where every value came from.

PyYAML composes the document into nodes (which carry line and column); this module turns the nodes
into plain Python values and a map from field path to position, rejecting duplicate keys. Scalars
become :class:`Text` — a ``str`` that also knows its resolved YAML tag — so a later stage can apply
yaml.v2's rule that a number or boolean written where a string is expected keeps its original text
(``cpu: 1`` is ``"1"``), while a field that wants a boolean can insist on a real YAML boolean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from jes import errors
from jes.util.textutil import whole_characters

Path = tuple[str | int, ...]

STR, INT, FLOAT, BOOL, NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))


class Text(str):
    """A YAML scalar: its text exactly as written, plus the tag YAML resolved for it."""

    tag: str

    def __new__(cls, value: str, tag: str = STR) -> Text:
        obj = super().__new__(cls, value)
        obj.tag = tag
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # keep the tag through copy/pickle
        return (Text, (str(self), self.tag))


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass(frozen=True)
class Document:
    """A parsed YAML document and the position of every key and value in it."""

    value: Any
    positions: dict[Path, Position]
    """Position of the value at each path; ``path + ("<key>",)`` entries hold the key's position."""
    problems: tuple[errors.Problem, ...] = ()
    """Structural problems found while reading (duplicate keys); the value keeps the first key."""

    def position(self, path: Path) -> Position:
        """The position of ``path`` or of its nearest ancestor that has one."""
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), Position(1, 1))


#: Nodes that aliases may add to a document (each use of ``*anchor`` copies the anchored subtree):
#: plenty for ``<<: *defaults`` merges, far below what an alias bomb would make of 300 bytes.
MAX_ALIAS_NODES = 10_000
#: How deeply values may nest (a recursive alias nests without end).
MAX_DEPTH = 64


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def load(text: str | bytes, *, file: str) -> Document:
    """Parse one YAML document; raise :class:`errors.ConfigError` on a syntax error.

    Duplicate keys do not raise here: they are listed in :attr:`Document.problems`, so a caller can
    report them together with everything else that is wrong. Parsing is bounded: aliases may add at
    most :data:`MAX_ALIAS_NODES` nodes and values nest at most :data:`MAX_DEPTH` deep, so neither an
    alias bomb nor a recursive alias costs more than a fraction of a second and a few MiB."""
    too_deep = _flow_too_deep(text if isinstance(text, str) else text.decode("utf-8", "replace"))
    if too_deep is not None:
        line, column = too_deep
        raise errors.ConfigError([errors.Problem(file, line, column, "", _TOO_DEEP)])
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader checks the characters at once
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from exc
    except yaml.YAMLError as exc:
        raise errors.ConfigError([errors.Problem(file, 1, 1, "", f"YAML error: {exc}")]) from exc
    except _TooBig as exc:
        mark = exc.node.start_mark
        raise errors.ConfigError([errors.Problem(file, mark.line + 1, mark.column + 1, "", str(exc))]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return Document(None, {(): Position(1, 1)})
    builder = _Builder(file)
    try:
        value = builder.build(node, ())
    except _TooBig as exc:
        mark = exc.node.start_mark
        raise errors.ConfigError([errors.Problem(file, mark.line + 1, mark.column + 1, "", str(exc))]) from None
    return Document(value, builder.positions, tuple(builder.problems))


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> errors.ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = exc.problem or "invalid YAML"
    if exc.context:
        what = f"{exc.context}: {what}"
    return errors.ConfigError([errors.Problem(file, line, column, "", f"YAML syntax error: {what}")])


def format_path(path: Path) -> str:
    """``("actions", 1, "tasks", 0, "cmd")`` → ``actions[1].tasks[0].cmd``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _flow_too_deep(text: str) -> tuple[int, int] | None:
    """Where ``[``/``{`` brackets first nest deeper than :data:`MAX_DEPTH` (line, column), if they do.

    One linear pass, before PyYAML sees the text: its scanner looks ahead through every open
    bracket for a possible key, so its cost grows with the square of the nesting."""
    depth, line, column = 0, 1, 0
    quote = ""
    comment = False
    previous = "\n"
    for char in text:
        column += 1
        if char == "\n":
            line, column, comment = line + 1, 0, False
            quote = "" if quote == "'" else quote  # a plain newline never ends a double-quoted string
        elif comment:
            pass
        elif quote:
            if char == quote and not (quote == '"' and previous == "\\"):
                quote = ""
        elif char in "'\"" and previous in " \t\n[{,:":
            quote = char
        elif char == "#" and previous in " \t\n":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, column
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char
    return None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer, stopped at :data:`MAX_DEPTH` levels while it descends: it pulls
    events from the parser lazily, so a deeply nested document is never scanned to its end (the
    scanner's cost grows with the square of the nesting)."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                start = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _TooBig(yaml.ScalarNode("tag:yaml.org,2002:null", "", start, start), _TOO_DEEP)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_TOO_DEEP = f"values nest deeper than {MAX_DEPTH} levels"


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path, Position] = {}
        self.problems: list[errors.Problem] = []
        self._loader = yaml.SafeLoader("")
        self._built: set[int] = set()
        self._repeats = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self._count(node, path)
        self.positions[path] = Position(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        raise AssertionError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def _count(self, node: yaml.Node, path: Path) -> None:
        """Refuse a document that aliases blow up, or that nests too deeply (a recursive alias)."""
        if len(path) > MAX_DEPTH:
            raise _TooBig(node, f"{_TOO_DEEP} (a recursive alias?)")
        if id(node) in self._built:  # the same node again: reached through an alias
            self._repeats += 1
            if self._repeats > MAX_ALIAS_NODES:
                raise _TooBig(node, f"aliases expand to more than {MAX_ALIAS_NODES} nodes")
        else:
            self._built.add(id(node))

    def _scalar(self, node: yaml.ScalarNode) -> Text | None:
        if node.tag == NULL:
            return None
        return Text(whole_characters(node.value), node.tag)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        explicit = [pair for pair in node.value if pair[0].tag != "tag:yaml.org,2002:merge"]
        try:
            self._loader.flatten_mapping(node)  # resolves "<<" merge keys like yaml.v2
        except yaml.MarkedYAMLError as exc:
            self.problems.append(_syntax_error(exc, self.file).problems[0])
        except RecursionError as exc:  # "<<" merging a mapping into itself
            raise _TooBig(node, f"{_TOO_DEEP} (a recursive alias?)") from exc
        merged = node.value[: len(node.value) - len(explicit)]
        result: dict[str, Any] = {}
        for key_node, value_node in explicit:
            self._entry(result, key_node, value_node, path, duplicates_allowed=False)
        for key_node, value_node in merged:  # explicit keys override merged ones
            self._entry(result, key_node, value_node, path, duplicates_allowed=True)
        return result

    def _entry(
        self,
        result: dict[str, Any],
        key_node: yaml.Node,
        value_node: yaml.Node,
        path: Path,
        *,
        duplicates_allowed: bool,
    ) -> None:
        if not isinstance(key_node, yaml.ScalarNode):
            self._problem(key_node, path, "mapping keys must be plain scalars")
            return
        key = whole_characters(key_node.value)
        if key in result:
            if not duplicates_allowed:
                first = self.positions[(*path, key, "<key>")]
                message = f"duplicate key {key!r} (first defined at line {first.line})"
                self._problem(key_node, (*path, key), message)
            return
        self.positions[(*path, key, "<key>")] = Position(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        result[key] = self.build(value_node, (*path, key))

    def _problem(self, node: yaml.Node, path: Path, message: str) -> None:
        mark = node.start_mark
        self.problems.append(errors.Problem(self.file, mark.line + 1, mark.column + 1, format_path(path), message))

