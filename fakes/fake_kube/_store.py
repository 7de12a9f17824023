"""The fake API server's object store: kinds, selectors, patches, watch history.

Everything here runs on the fake server's event loop thread (single-threaded, no locks). Stored
objects are never changed in place: an update stores a new dict, so the objects kept in the watch
history stay what they were when the event happened.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from fakes.fake_kube import _encoding

Obj = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """One resource type the fake serves."""

    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """The name Kubernetes uses in messages: ``jobs.batch``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS: dict[str, Kind] = {
    k.plural: k
    for k in (
        Kind("jobs", "Job", "batch", "v1"),
        Kind("pods", "Pod", "", "v1"),
        Kind("events", "Event", "", "v1"),
        Kind("configmaps", "ConfigMap", "", "v1"),
        Kind("secrets", "Secret", "", "v1"),
        Kind("serviceaccounts", "ServiceAccount", "", "v1"),
        Kind("persistentvolumeclaims", "PersistentVolumeClaim", "", "v1"),
        Kind("leases", "Lease", "coordination.k8s.io", "v1"),
    )
}
_ALIASES = {k.kind.lower(): k.plural for k in KINDS.values()} | {
    f"{k.plural}.{k.group}": k.plural for k in KINDS.values() if k.group
}


def kind_of(name: str) -> Kind:
    """``"Job"``, ``"job"``, ``"jobs"`` or ``"jobs.batch"`` → the :class:`Kind`."""
    key = name.lower()
    plural = key if key in KINDS else _ALIASES.get(key)
    if plural is None:
        raise KeyError(f"the fake Kubernetes API does not serve {name!r}")
    return KINDS[plural]


_last_time: tuple[datetime, str] = (datetime.min, "")


def kube_time(when: datetime) -> str:
    """Kubernetes' ``metav1.Time``: RFC 3339 in whole seconds, ``Z`` suffix."""
    global _last_time
    last, text = _last_time
    second = when.replace(microsecond=0)
    if second != last or second.tzinfo is not last.tzinfo:
        text = second.strftime("%Y-%m-%dT%H:%M:%SZ")
        _last_time = (second, text)
    return text


def clone(obj: T) -> T:
    """A deep copy of plain JSON data (faster than copy.deepcopy for dicts of lists)."""
    copied: T = json.loads(json.dumps(obj))
    return copied


dumps = _encoding.dumps


# ---------------------------------------------------------------------------------------------
# Selectors

Predicate = Callable[[Obj], bool]
_REQUIREMENT_SPLIT = re.compile(r",(?![^()]*\))")
_SET_REQ = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _always(_obj: Obj) -> bool:
    return True


class LabelSelector:
    """A parsed label selector; ``equal`` lists its ``key=value`` requirements (for the index)."""

    def __init__(self, text: str | None) -> None:
        self.text = text or ""
        self.equal: list[tuple[str, str]] = []
        self.checks: list[Callable[[Mapping[str, str]], bool]] = []
        for part in _REQUIREMENT_SPLIT.split(self.text) if self.text.strip() else []:
            requirement = part.strip()
            self.checks.append(_label_requirement(requirement))
            key, op, value = requirement.partition("==") if "==" in requirement else requirement.partition("=")
            if op and not key.endswith("!"):
                self.equal.append((key.strip(), value.strip()))

    def __call__(self, obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in self.checks)


def label_selector(text: str | None) -> Predicate:
    """Parse ``a=b,c!=d,e,!f,g in (x,y),h notin (z)`` into a predicate over objects."""
    return LabelSelector(text)


def _label_requirement(req: str) -> Callable[[Mapping[str, str]], bool]:
    found = _SET_REQ.match(req)
    if found:
        key, op, raw = found.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in req:
            key, value = (s.strip() for s in req.split(op, 1))
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if req.startswith("!"):
        key = req[1:].strip()
        return lambda labels: key not in labels
    return lambda labels: req in labels


def _field_value(obj: Obj, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    return node if isinstance(node, str) else json.dumps(node)


def field_selector(text: str | None) -> Predicate:
    """Parse ``metadata.name=x,involvedObject.name=y,status.phase!=Running``."""
    if not text or not text.strip():
        return _always
    checks: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        negate = "!=" in part
        path, value = part.split("!=" if negate else ("==" if "==" in part else "="), 1)
        checks.append((path.strip(), negate, value.strip()))

    def matches(obj: Obj) -> bool:
        return all((_field_value(obj, path) == value) != negate for path, negate, value in checks)

    return matches


# ---------------------------------------------------------------------------------------------
# Patches

_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ownerReferences": "uid",
    "conditions": "type",
    "imagePullSecrets": "name",
    "finalizers": "",
}


def merge_patch(target: Any, patch: Any, *, strategic: bool = False, key: str = "") -> Any:
    """RFC 7386 JSON merge patch; ``strategic`` merges well-known lists by their merge key."""
    if isinstance(patch, list) and strategic and isinstance(target, list) and key in _MERGE_KEYS:
        return _merge_list(target, patch, _MERGE_KEYS[key])
    if not isinstance(patch, dict):
        return clone(patch)
    result: Obj = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value, strategic=strategic, key=name)
    return result


def _merge_list(target: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    if not merge_key:  # a set of scalars
        return list(dict.fromkeys([*target, *patch]))
    result = list(target)
    for item in patch:
        if not isinstance(item, dict):
            continue
        index = next((i for i, old in enumerate(result) if old.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(clone(item))
        else:
            result[index] = merge_patch(result[index], item, strategic=True)
    return result


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 (add, remove, replace, test)."""
    doc: Any = clone(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ValueError(f"test operation failed at {op['path']}")
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, clone(op["value"]))
                else:
                    parent[index] = clone(op["value"])
            else:
                parent[last] = clone(op["value"])
        else:
            raise ValueError(f"unsupported JSON patch operation {kind!r}")
    result: Obj = doc
    return result


# ---------------------------------------------------------------------------------------------
# Status bodies


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``metav1.Status`` as the real API server sends with errors."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


# ---------------------------------------------------------------------------------------------
# Store and watches


class WatchEvent(NamedTuple):
    """One event of the watch history, kept as the line it was sent as: bytes, no object tree for
    the garbage collector to walk (a full history is tens of thousands of object versions)."""

    rv: int
    line: bytes

    def decoded(self) -> Obj:
        obj: Obj = json.loads(self.line)["object"]
        return obj


@dataclass(eq=False)
class Watcher:
    """One open watch stream."""

    namespace: str | None
    labels: Predicate
    fields: Predicate
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels(obj) and self.fields(obj)


Listener = Callable[[str, str, Obj], None]


Key = tuple[str, str]
"""(namespace, name)"""


class Store:
    """Objects of every kind, a global resourceVersion counter and per-kind watch history.

    Indexes by namespace, by label and by owner keep lists and garbage collection cheap with
    thousands of objects.
    """

    def __init__(self, *, history_size: int = 20_000, first_rv: int = 1000) -> None:
        self.rv = first_rv
        self.history_size = history_size
        self.objects: dict[str, dict[Key, Obj]] = {p: {} for p in KINDS}
        self.history: dict[str, deque[WatchEvent]] = {p: deque() for p in KINDS}
        self.compacted: dict[str, int] = dict.fromkeys(KINDS, 0)
        """A watch may resume from resourceVersion N only if N >= compacted[kind]."""
        self.watchers: dict[str, set[Watcher]] = {p: set() for p in KINDS}
        self.listeners: list[Listener] = []
        self._by_namespace: dict[str, dict[str, dict[str, Obj]]] = {p: {} for p in KINDS}
        self._by_label: dict[str, dict[tuple[str, str], set[Key]]] = {p: {} for p in KINDS}
        self._by_owner: dict[str, set[tuple[str, str, str]]] = {}
        self.encoder = _encoding.StoredEncoder()
        """Encodes stored objects (watch lines, answers), reusing the encoding of unchanged specs."""

    def now_rv(self) -> str:
        return str(self.rv)

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self.objects[plural].get((namespace, name))

    def query(
        self,
        plural: str,
        namespace: str | None = None,
        *,
        labels: Predicate = _always,
        fields: Predicate = _always,
    ) -> list[Obj]:
        candidates: Iterable[Obj]
        equal = labels.equal if isinstance(labels, LabelSelector) else []
        if equal:
            index = self._by_label[plural]
            keys = min((index.get(pair, set()) for pair in equal), key=len)
            found = (self.objects[plural].get(key) for key in keys)
            candidates = [o for o in found if o is not None]
        elif namespace is not None:
            candidates = self._by_namespace[plural].get(namespace, {}).values()
        else:
            candidates = self.objects[plural].values()
        selected = [
            o
            for o in candidates
            if (namespace is None or o["metadata"].get("namespace") == namespace) and labels(o) and fields(o)
        ]
        return sorted(selected, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def owned_by(self, uid: str, namespace: str) -> Iterable[tuple[str, Obj]]:
        for plural, ns, name in sorted(self._by_owner.get(uid, ())):
            obj = self.objects[plural].get((ns, name))
            if obj is not None and ns == namespace:
                yield plural, obj

    def _index(self, plural: str, obj: Obj, add: bool) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        spaces = self._by_namespace[plural]
        labels = self._by_label[plural]
        owners = [ref.get("uid", "") for ref in meta.get("ownerReferences") or ()]
        if add:
            spaces.setdefault(key[0], {})[key[1]] = obj
            for pair in (meta.get("labels") or {}).items():
                labels.setdefault(pair, set()).add(key)
            for uid in owners:
                self._by_owner.setdefault(uid, set()).add((plural, *key))
            return
        spaces.get(key[0], {}).pop(key[1], None)
        for pair in (meta.get("labels") or {}).items():
            labels.get(pair, set()).discard(key)
        for uid in owners:
            self._by_owner.get(uid, set()).discard((plural, *key))

    def _store(self, plural: str, obj: Obj) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        old = self.objects[plural].get(key)
        self.objects[plural][key] = obj
        if old is not None and _same_index_keys(old["metadata"], meta):  # most updates: status only
            self._by_namespace[plural][key[0]][key[1]] = obj
            return
        if old is not None:
            self._index(plural, old, add=False)
        self._index(plural, obj, add=True)

    def create(self, plural: str, obj: Obj, now: str, *, uid: str | None = None) -> Obj:
        kind = KINDS[plural]
        meta = obj.setdefault("metadata", {})
        obj["kind"] = kind.kind
        obj["apiVersion"] = kind.api_version
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        meta["uid"] = uid or new_uid()
        meta["creationTimestamp"] = now
        meta.setdefault("generation", 1)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self._store(plural, obj)
        self._emit(plural, "ADDED", obj)
        return obj

    def update(self, plural: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self._store(plural, obj)
        self._emit(plural, "MODIFIED", obj)
        return obj

    def remove(self, plural: str, namespace: str, name: str) -> Obj | None:
        old = self.objects[plural].pop((namespace, name), None)
        if old is None:
            return None
        self._index(plural, old, add=False)
        obj = dict(old)  # stored objects are never changed in place: a new top and metadata do
        obj["metadata"] = dict(old["metadata"])
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(plural, "DELETED", obj)
        return obj

    def _emit(self, plural: str, event_type: str, obj: Obj) -> None:
        line = self.encoder.line(event_type, obj)
        history = self.history[plural]
        if len(history) >= self.history_size:
            self.compacted[plural] = history.popleft().rv
        history.append(WatchEvent(self.rv, line))
        for watcher in self.watchers[plural]:
            if watcher.matches(obj):
                watcher.queue.put_nowait(line)
        for listener in self.listeners:
            listener(plural, event_type, obj)

    def since(self, plural: str, rv: int, watcher: Watcher) -> list[bytes]:
        """History lines after ``rv`` that the watcher wants (caller checked ``compacted``)."""
        return [e.line for e in self.history[plural] if e.rv > rv and watcher.matches(e.decoded())]

    def clear(self) -> None:
        """Forget every object and all history (resource versions keep counting up)."""
        for plural in KINDS:
            self.objects[plural].clear()
            self._by_namespace[plural].clear()
            self._by_label[plural].clear()
            self.expire(plural)
        self._by_owner.clear()
        self.encoder.clear()

    def expire(self, plural: str) -> None:
        """Forget the history: any watch resuming from before now gets 410 Gone."""
        self.history[plural].clear()
        self.compacted[plural] = self.rv


def _same_index_keys(old: Obj, new: Obj) -> bool:
    """Whether two versions' metadata put them in the same label and owner index entries."""
    return old.get("labels") == new.get("labels") and old.get("ownerReferences") == new.get("ownerReferences")


_RANDOM = random.Random()


def new_uid() -> str:
    """A version-4 UUID from a fast (non-cryptographic) generator."""
    return str(uuid.UUID(int=_RANDOM.getrandbits(128), version=4))


def token_hex(nbytes: int) -> str:
    return f"{_RANDOM.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def random_below(n: int) -> int:
    return _RANDOM.randrange(n)


_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int = 5) -> str:
    """Kubernetes' generateName alphabet (no vowels, no confusable digits)."""
    return "".join(_RANDOM.choice(_SUFFIX_ALPHABET) for _ in range(length))
