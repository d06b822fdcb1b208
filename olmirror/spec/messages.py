"""The wording of a spec error: one paragraph per fault, naming file:line:column, the field,
what was found and the fix (an example, the allowed values, a near spelling).
"""

from __future__ import annotations

import difflib
import types
import typing
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel

from olmirror.errors import SpecError
from olmirror.spec.checks import Loc
from olmirror.spec.models import Spec
from olmirror.spec.values import PATTERN_HINTS
from olmirror.spec.yaml_reader import Positions, at, loc_text, yaml_type

MAX_REPORTED = 10


def _unwrap(annotation: Any, part: str | int) -> Any:
    """The type found one step below `annotation` when following `part`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg, part)
    if origin is list and isinstance(part, int):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field else None
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    annotation: Any = Spec
    for part in loc:
        annotation = _unwrap(annotation, part)
    while typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


# How a missing key is usually written, to show in the message that it is missing.
_EXAMPLES = {
    "version": "version: 1",
    "mirror": "mirror: {directory: /srv/pypi, targets: [...]}",
    "directory": "directory: /srv/pypi",
    "targets": 'targets: [{python: "3.12", platform: manylinux_2_28_x86_64}]',
    "python": 'python: "3.12"',
    "platform": "platform: manylinux_2_28_x86_64",
    "name": "name: worker-a",
    "path": "path: /opt/ol/default-ol",
}

_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}


def _field(loc: Loc) -> Any:
    """The pydantic FieldInfo for the field at `loc`, when it is a model's field."""
    model = _model_at(loc[:-1])
    return model.model_fields.get(str(loc[-1])) if model and loc else None


def _literal_values(loc: Loc) -> list[Any]:
    field = _field(loc)
    annotation = field.annotation if field else None
    while typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return list(typing.get_args(annotation)) if typing.get_origin(annotation) is Literal else []


def _type_fix(kind: str, value: Any, raw: str | None, loc: Loc) -> str:
    """What to write instead of a value of the wrong YAML type."""
    if value is None:
        field = _field(loc)
        if field is not None and not field.is_required():
            return "give it a value, or remove the key to take the default"
        return "give it a value"
    if kind == "string_type" and isinstance(value, (bool, int, float, date)):
        text = raw if raw is not None else str(value)
        read = f"YAML reads the bare {text} as a {yaml_type(value)}"
        if isinstance(value, float) and raw is not None and str(value) != raw:
            read = f"YAML reads the bare {raw} as the number {value}"
        return f'put it in quotes, like "{text}" ({read})'
    if kind == "int_type" and isinstance(value, str) and value.strip().isdigit():
        return f"remove the quotes, like {value.strip()}"
    if kind == "bool_type" and isinstance(value, str):
        return "write true or false, without quotes"
    if kind == "list_type" and isinstance(value, (str, int, float)):
        return f"write a list, even of one item, like [{_short(value)}]"
    if kind == "list_type":
        return "write a list: one '- item' line per entry, or [a, b]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        if loc == ("hosts",):
            return (
                "write one 'NAME: {address: ...}' entry per host, "
                "like hosts: {worker-a: {address: 10.0.0.11}}"
            )
        return "write 'key: value' lines indented under it, or {key: value, ...}"
    return f"write {_EXPECTED.get(kind, 'a value of the right type')}"


def describe_error(error: dict[str, Any], positions: Positions) -> str:
    kind, loc = error["type"], tuple(error["loc"])
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        valid = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else "remove it; "
        return f"unknown key {loc[-1]!r}; {hint}valid keys here: {', '.join(valid)}"
    if kind == "missing":
        name = str(loc[-1])
        parent = f"to {loc_text(loc[:-1])}" if loc[:-1] else "at the top level"
        example = _EXAMPLES.get(name, f"{name}: ...")
        field = _field(loc)
        about = f" ({field.description.rstrip('.')})" if field and field.description else ""
        return f"required key {name!r} is missing; add it {parent}, like '{example}'{about}"
    if kind in _EXPECTED:
        got = f"{yaml_type(value)} {_short(value)}" if value is not None else "an empty value"
        fix = _type_fix(kind, value, positions.raw.get(loc), loc)
        return f"expected {_EXPECTED[kind]}, got {got}; {fix}"
    if kind == "literal_error" and loc == ("version",):
        return f"{_short(value)} is not a spec version this olmirror reads; write 'version: 1'"
    if kind == "literal_error":
        allowed = _literal_values(loc)
        choices = ", ".join(repr(a) for a in allowed) or str(ctx.get("expected", ""))
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{_short(value)} is not allowed here; {hint}write one of: {choices}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        hint = PATTERN_HINTS.get(pattern, f"it must match the pattern {pattern}")
        return f"{_short(value)} is not valid here; {hint}"
    if kind == "too_short" and loc == ("mirror", "targets"):
        return (
            f"needs at least one target Python environment; add one, like '{_EXAMPLES['targets']}'"
        )
    if kind in ("greater_than_equal", "less_than_equal") and loc[-1] == "port":
        return f"{_short(value)} is not a port; use a number from 1 to 65535, like 22"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return message
    return f"{message}, got {yaml_type(value)} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def report(name: str, positions: Positions, located: list[tuple[Loc, str, bool]]) -> SpecError:
    lines = []
    for loc, message, is_key in located[:MAX_REPORTED]:
        mark = positions.find(loc, key=is_key)
        where = loc_text(loc) or "top level"
        lines.append(f"{at(name, mark)}: {where}: {message}")
    if len(located) > MAX_REPORTED:
        lines.append(f"... and {len(located) - MAX_REPORTED} more problems")
    return SpecError("\n".join(lines))
