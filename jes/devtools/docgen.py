"""Reference tables for the README, generated from the config model and the settings.

``python -m jes.devtools.docgen`` rewrites the marked sections of README.md; a test fails when they are
out of date, so the documentation always says what the code does.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from jes import settings
from jes.distributor import config as distributor_config
from jes.matcher import config

SECTIONS = {
    "config-reference": "config_reference",
    "settings-reference": "settings_reference",
    "distributor-reference": "distributor_reference",
}


def _type_of(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "object"
    if "anyOf" in schema:
        kinds = [_type_of(s, defs) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds))
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}), defs)}"
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if set(kinds) >= {"string", "number", "boolean"}:
            return "string"
        if kinds == ["array"]:
            return f"list of {_type_of(schema.get('items', {}), defs)}"
        if kinds == ["object"] and "additionalProperties" in schema:
            return f"map of {_type_of(schema['additionalProperties'], defs)}"
        return " or ".join(kinds)
    if "enum" in schema:
        return " or ".join(map(str, schema["enum"]))
    if "const" in schema:
        return f"`{schema['const']}`"
    return str(kind or "object")


def _rows(model: str, prefix: str, defs: dict[str, Any], out: list[str]) -> None:
    schema = defs[model]
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        ref = prop.get("$ref") or next((s.get("$ref") for s in prop.get("anyOf", []) if "$ref" in s), None)
        items = prop.get("items") or next((s.get("items") for s in prop.get("anyOf", []) if "items" in s), None)
        item_ref = items.get("$ref") if isinstance(items, dict) else None
        default = prop.get("default", "—" if name in schema.get("required", []) else "")
        shown = "" if default in ("", None) else ("required" if default == "—" else f"`{json.dumps(default)}`")
        description = prop.get("description", "")
        out.append(f"| `{path}` | {_type_of(prop, defs)} | {shown} | {description} |")
        if ref:
            _rows(ref.rsplit("/", 1)[-1], f"{path}.", defs, out)
        if item_ref:
            _rows(item_ref.rsplit("/", 1)[-1], f"{path}[].", defs, out)


def config_reference() -> str:
    schema = config.json_schema()
    defs = dict(schema.get("$defs", {}))
    defs["JobConfig"] = schema
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    _rows("JobConfig", "", defs, lines)
    return "\n".join(lines)


def settings_reference() -> str:
    lines = ["| variable | meaning [default] |", "|---|---|"]
    lines += [f"| `{name}` | {doc} |" for name, doc in settings.SETTINGS_DOC]
    return "\n".join(lines)


def distributor_reference() -> str:
    lines = ["| variable | what `jes distributor` does with it [default] |", "|---|---|"]
    lines += [f"| `{v.env}` | {v.doc} |" for v in distributor_config.VARIABLES]
    return "\n".join(lines)


def render(readme: str) -> str:
    """README text with every generated section replaced by its current content."""
    for marker, function in SECTIONS.items():
        content = globals()[function]()
        pattern = re.compile(rf"<!-- BEGIN {marker} -->\n.*?<!-- END {marker} -->", re.S)
        block = f"<!-- BEGIN {marker} -->\n{content}\n<!-- END {marker} -->"
        readme, found = pattern.subn(block.replace("\\", "\\\\"), readme)
        if not found:
            raise ValueError(f"README.md has no <!-- BEGIN {marker} --> ... <!-- END {marker} --> section")
    return readme


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
