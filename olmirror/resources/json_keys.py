"""Values at key paths inside an existing JSON document, and key paths it must not have.

Every other key keeps its value and its place, and the file keeps its
indentation, so that a program that owns the file (OpenLambda's `ol`) and a
person reading a diff both see only the keys olmirror manages change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError

_MISSING = object()


def _indent_of(text: str) -> str | None:
    """The indentation unit of a JSON text, or None when it is on one line."""
    match = re.search(r"[{\[]\s*?\n([ \t]+)\S", text)
    if match:
        return match.group(1)
    return None if "\n" not in text.strip() else ""


def render(document: Any, template: str) -> str:
    """`document` as JSON laid out like `template` (indentation and final newline)."""
    indent = _indent_of(template)
    text = json.dumps(document, indent=indent, ensure_ascii=False)
    return text + "\n" if template.endswith("\n") else text


def _get(document: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def _set(document: dict[str, Any], keys: list[str], value: Any, path: str) -> None:
    for key in keys[:-1]:
        child = document.setdefault(key, {})
        if not isinstance(child, dict):
            raise ResourceError(
                f"{path}: cannot set {'.'.join(keys)}: {key!r} holds a {type(child).__name__}, "
                "not an object"
            )
        document = child
    document[keys[-1]] = value


@dataclass(frozen=True)
class JsonKeys(Resource):
    kind = "json_keys"
    path: str
    values: tuple[tuple[tuple[str, ...], Any], ...]
    absent: tuple[tuple[str, ...], ...] = ()  # removed when present

    @property
    def id(self) -> str:
        return f"json {self.path}"

    def request(self) -> FactRequest:
        return FactRequest(content=frozenset({self.path}))

    def observe(self, facts: Facts) -> str:
        fact = facts.path(self.path)
        return f"{fact.kind}:{fact.sha256}"

    def _parse(self, data: bytes) -> tuple[str, Any]:
        text = data.decode(errors="replace")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResourceError(
                f"{self.path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); "
                "fix the file or remove it so it is created again"
            ) from None
        if not isinstance(document, dict):
            raise ResourceError(f"{self.path}: the document is not a JSON object")
        return text, document

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        fact = facts.path(self.path)
        if fact.kind is None:
            if self.path not in pending:
                raise ResourceError(f"{self.path} does not exist, so its keys cannot be set")
            diff = tuple(f"+ {'.'.join(k)} = {json.dumps(v)}" for k, v in self.values)
            return Change(self, "update", f"set keys in {self.path} once it is created", diff)
        if fact.kind != "file" or fact.content is None:
            raise ResourceError(
                f"{self.path} is not a readable JSON file ({fact.error or fact.kind})"
            )
        _, document = self._parse(fact.content)
        diff = []
        for keys, value in self.values:
            old = _get(document, list(keys))
            if old is _MISSING:
                diff.append(f"+ {'.'.join(keys)} = {json.dumps(value)}")
            elif old != value or type(old) is not type(value):
                diff.append(f"~ {'.'.join(keys)}: {json.dumps(old)} -> {json.dumps(value)}")
        for keys in self.absent:
            old = _get(document, list(keys))
            if old is not _MISSING:
                diff.append(f"- {'.'.join(keys)} (was {json.dumps(old)})")
        if diff:
            return Change(self, "update", f"set keys in {self.path}", tuple(diff))
        return self.unchanged(f"json {self.path}")

    def apply(self, conn: Connection) -> None:
        text, document = self._parse(conn.read_file(self.path))
        for keys, value in self.values:
            _set(document, list(keys), value, self.path)
        for keys in self.absent:
            parent = _get(document, list(keys[:-1]))
            if isinstance(parent, dict):
                parent.pop(keys[-1], None)
        new = render(document, text)
        if new != text:
            conn.write_file(self.path, new.encode())

    def provides(self) -> frozenset[str]:
        return frozenset({self.path})
