"""Read a spec file into a validated `Spec`, with every error tied to file:line:column.

PyYAML's composer gives each node its position; we build plain data from the
node tree ourselves so that we can remember where every value came from and
refuse duplicate keys, which PyYAML would silently collapse.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import types
import typing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from olmirror.errors import SpecError
from olmirror.spec.checks import Loc, problems
from olmirror.spec.models import LOCAL, PATTERN_HINTS, Spec, Worker

MAX_SPEC_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 32
MAX_REPORTED = 10
MAX_SHOWN_DEPTH = 6

_CORE = "tag:yaml.org,2002:"
_MERGE = _CORE + "merge"
# The tags a plain spec produces; any other (`!!python/object`, `!!binary`, `!custom`)
# is refused rather than constructed or silently ignored.
ALLOWED_TAGS = frozenset(
    _CORE + name for name in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
)

# Plainer words for PyYAML's syntax errors, each with the usual fix.
_SYNTAX_HINTS = (
    ("'\\t'", "YAML does not allow tabs for indentation; indent with spaces"),
    (
        "expected <block end>",
        "a line here is indented differently from the lines above it; keys of one mapping "
        "must start in the same column (or a quote opened above is not closed)",
    ),
    (
        "mapping values are not allowed here",
        "a ': ' is out of place; put the value on its own indented line under its key, "
        "or quote a value that contains ': '",
    ),
    (
        "could not find expected ':'",
        "a key is missing its ':' (or a quote opened above is not closed)",
    ),
    (
        "expected ',' or '}'",
        "a '{' is not closed; add the matching '}' (or a ',' between entries)",
    ),
    (
        "expected ',' or ']'",
        "a '[' is not closed; add the matching ']' (or a ',' between items)",
    ),
    ("found undefined alias", "define the anchor (&name) before using the alias (*name)"),
    ("found unexpected end of stream", "a quote is not closed; add the closing quote"),
    ("found unknown escape character", "use single quotes, or write a backslash as '\\\\'"),
)


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark | None) -> None:
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """PyYAML's safe composer, refusing documents nested deeper than a spec can be.

    PyYAML composes recursively, so a document of a few thousand '[' would otherwise
    end in a RecursionError instead of a message.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    path: Path
    digest: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


class _Positions:
    """Where each value (and each mapping key) of the document starts."""

    def __init__(self) -> None:
        self.values: dict[Loc, yaml.Mark] = {}
        self.keys: dict[Loc, yaml.Mark] = {}
        self.raw: dict[Loc, str] = {}

    def find(self, loc: Loc, *, key: bool = False) -> yaml.Mark | None:
        if key and loc in self.keys:
            return self.keys[loc]
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.values:
                return self.values[loc[:end]]
        return None


class _Builder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.positions = _Positions()
        self.constructor = yaml.SafeLoader("")
        self.nodes = 0
        self.path: set[int] = set()  # the nodes being built, to catch an alias inside itself
        self.explicit: dict[int, set[int]] = {}

    def build(self, node: yaml.Node, loc: Loc = ()) -> Any:
        self.nodes += 1
        shown = _loc_text(loc[:MAX_SHOWN_DEPTH]) + ("..." if len(loc) > MAX_SHOWN_DEPTH else "")
        where = f"{_at(self.name, node.start_mark)}: {shown or 'top level'}"
        if id(node) in self.path:
            raise SpecError(
                f"{where}: this alias refers to a value that contains it, so it never ends; "
                "write the value out instead of using '*'"
            )
        if self.nodes > MAX_NODES:
            # Deep inside an expansion the place is of little use; name the top-level key.
            top = _at(self.name, self.positions.keys.get(loc[:1], node.start_mark))
            raise SpecError(
                f"{top}: {_loc_text(loc[:1]) or 'top level'}: the document expands to more "
                f"than {MAX_NODES} values (YAML aliases repeating aliases); write the spec "
                "out plainly without '*' aliases"
            )
        if len(loc) > MAX_DEPTH:
            raise SpecError(
                f"{where}: the document nests more than {MAX_DEPTH} levels deep; "
                "write the spec out plainly"
            )
        self._check_tag(node, where)
        self.positions.values[loc] = node.start_mark
        self.path.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        finally:
            self.path.discard(id(node))
        self.positions.raw[loc] = node.value
        return self.constructor.construct_object(node, deep=True)

    @staticmethod
    def _check_tag(node: yaml.Node, where: str) -> None:
        if node.tag not in ALLOWED_TAGS:
            tag = node.tag.replace(_CORE, "!!")
            raise SpecError(
                f"{where}: the YAML tag {tag!r} is not allowed in a spec; remove it and write "
                "a plain value (in quotes for a string)"
            )

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        where = _loc_text(loc) or "top level"
        if id(node) not in self.explicit:
            # Keys written in this mapping, as opposed to those a '<<' merge brings in:
            # only these must be unique; a written key overrides a merged one.
            self.explicit[id(node)] = {id(k) for k, _ in node.value if k.tag != _MERGE}
            try:
                self.constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                raise SpecError(
                    f"{_at(self.name, exc.problem_mark)}: {where}: a '<<' merge takes a mapping "
                    "or a list of mappings; write it like '<<: *defaults' where '&defaults' "
                    "marks a mapping"
                ) from None
        explicit = self.explicit[id(node)]
        out: dict[Any, Any] = {}
        first: dict[Any, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise SpecError(
                    f"{_at(self.name, key_node.start_mark)}: {where}: a key must be a plain "
                    f"name, not a {kind}; remove the '?' or brackets around the key"
                )
            self._check_tag(key_node, f"{_at(self.name, key_node.start_mark)}: {where}")
            key = self.constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SpecError(
                    f"{_at(self.name, key_node.start_mark)}: {where}: "
                    f"the key {key_node.value!r} is read by YAML as a {_yaml_type(key)}, "
                    f"but keys are names; write it in quotes, like '{key_node.value}'"
                )
            if key in first and id(key_node) in explicit:
                raise SpecError(
                    f"{_at(self.name, key_node.start_mark)}: {_loc_text((*loc, key))}: duplicate "
                    f"key {key!r} (first at line {first[key].line + 1}); YAML would keep only the "
                    "last one, so remove or rename one of them"
                )
            if id(key_node) in explicit:
                first[key] = key_node.start_mark
            self.positions.keys[(*loc, key)] = key_node.start_mark
            out[key] = self.build(value_node, (*loc, key))
        return out


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number"}.get(type(value), type(value).__name__)


def _at(name: str, mark: yaml.Mark | None) -> str:
    return f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name


def _loc_text(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).replace("_", "a").replace("-", "a").isalnum():
            text += f".{part}" if text else str(part)
        else:
            text += f"[{str(part)!r}]"
    return text


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
        read = f"YAML reads the bare {text} as a {_yaml_type(value)}"
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


def _describe(error: dict[str, Any], positions: _Positions) -> str:
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
        parent = f"to {_loc_text(loc[:-1])}" if loc[:-1] else "at the top level"
        example = _EXAMPLES.get(name, f"{name}: ...")
        field = _field(loc)
        about = f" ({field.description.rstrip('.')})" if field and field.description else ""
        return f"required key {name!r} is missing; add it {parent}, like '{example}'{about}"
    if kind in _EXPECTED:
        got = f"{_yaml_type(value)} {_short(value)}" if value is not None else "an empty value"
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
    return f"{message}, got {_yaml_type(value)} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _report(name: str, positions: _Positions, located: list[tuple[Loc, str, bool]]) -> SpecError:
    lines = []
    for loc, message, is_key in located[:MAX_REPORTED]:
        mark = positions.find(loc, key=is_key)
        where = _loc_text(loc) or "top level"
        lines.append(f"{_at(name, mark)}: {where}: {message}")
    if len(located) > MAX_REPORTED:
        lines.append(f"... and {len(located) - MAX_REPORTED} more problems")
    return SpecError("\n".join(lines))


def _read(path: Path) -> str:
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                f"{name}: the file is {size / 1e6:.1f} MB; a spec is at most "
                f"{MAX_SPEC_BYTES >> 20} MiB, so check that -f names the spec and not a data file"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(
            f"{name}: no such file; pass the spec with -f FILE "
            "(start from playbooks/quickstart.yaml)"
        ) from None
    except IsADirectoryError:
        raise SpecError(f"{name}: is a directory; pass the spec file itself with -f FILE") from None
    except OSError as exc:
        raise SpecError(f"{name}: cannot read the file ({exc.strerror})") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{name}: the file is UTF-16 text; save it as UTF-8")
    if b"\0" in raw:
        raise SpecError(f"{name}: this is a binary file, not a YAML spec; check the -f argument")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", "replace")) + 1
        raise SpecError(
            f"{name}:{line}:{column}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "save it as UTF-8"
        ) from None


def _syntax_error(name: str, exc: yaml.MarkedYAMLError) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    context = ""
    if exc.context and exc.context_mark and exc.problem_mark:
        started = exc.context_mark
        if (started.line, started.column) != (mark.line, mark.column):
            context = f" ({exc.context} that starts at line {started.line + 1}, column "
            context += f"{started.column + 1})"
    hint = next((fix for words, fix in _SYNTAX_HINTS if words in problem), "")
    hint = f"; {hint}" if hint else "; check the quotes, brackets and indentation there"
    return SpecError(f"{_at(name, mark)}: YAML syntax error: {problem}{context}{hint}")


def _parse(name: str, text: str) -> tuple[Any, _Positions]:
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(name, exc) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: YAML syntax error: {exc}; save the spec as UTF-8 text") from None
    except _TooDeep as exc:
        raise SpecError(
            f"{_at(name, exc.mark)}: the document nests more than {MAX_DEPTH} levels deep; "
            "a spec is only a few levels deep, so check the brackets and indentation"
        ) from None
    if not nodes or nodes[0] is None:
        raise SpecError(
            f"{name}: the spec is empty; it needs at least 'version: 1' and a 'mirror' "
            "(start from playbooks/quickstart.yaml)"
        )
    if len(nodes) > 1:
        where = _at(name, nodes[1].start_mark)
        raise SpecError(f"{where}: a spec is one YAML document; remove the second '---'")
    builder = _Builder(name)
    try:
        data = builder.build(nodes[0])
    except yaml.MarkedYAMLError as exc:
        raise SpecError(
            f"{_at(name, exc.problem_mark)}: {exc.problem}; write a plain value instead"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{_at(name, nodes[0].start_mark)}: the spec must be a mapping of keys "
            f"(version, hosts, mirror, allowlist, workers), not a {type(data).__name__}"
        )
    return data, builder.positions


def _local_path(base: Path, path: str) -> str:
    return str((base / os.path.expanduser(path)).resolve(strict=False))


def _resolve_worker(worker: Worker, base: Path, on_this_machine: bool) -> Worker:
    """The worker's path (when local) and its lambdas' source folders (always on this machine)."""
    lambdas = {
        name: item.model_copy(update={"source": _local_path(base, item.source)})
        if item.source is not None
        else item
        for name, item in worker.lambdas.items()
    }
    update: dict[str, object] = {"lambdas": lambdas}
    if on_this_machine:
        update["path"] = _local_path(base, worker.path)
        if worker.ol is not None and "/" in worker.ol:
            update["ol"] = _local_path(base, worker.ol)
    return worker.model_copy(update=update)


def _missing_local_files(spec: Spec) -> list[tuple[Loc, str]]:
    """Files the spec names on this machine that cannot be read, with the field and the fix."""
    found: list[tuple[Loc, str]] = []
    ca_file = spec.mirror.ca_file
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        reason = "does not exist" if not os.path.exists(ca_file) else "is not readable"
        found.append(
            (
                ("mirror", "ca_file"),
                f"{ca_file} {reason}; give the path of the upstream's CA bundle (PEM)",
            )
        )
    for i, worker in enumerate(spec.workers):
        for name, item in worker.lambdas.items():
            if item.source is not None and not os.path.isdir(item.source):
                found.append(
                    (
                        ("workers", i, "lambdas", name, "source"),
                        f"{item.source} is not a folder; give the lambda's folder (with its "
                        "f.py and requirements.in), relative to the spec",
                    )
                )
    return found


def _resolve_paths(spec: Spec, base: Path) -> Spec:
    """Make every path on this machine absolute, relative to the spec file's folder."""

    def local(host: str) -> bool:
        return host == LOCAL or host not in spec.hosts

    hosts = {}
    for name, host in spec.hosts.items():
        update: dict[str, str] = {}
        for field in ("identity_file", "known_hosts"):
            value = getattr(host, field)
            if value is not None:
                update[field] = _local_path(base, value)
        if local(name):
            if "/" in host.ol:
                update["ol"] = _local_path(base, host.ol)
            if host.state_dir is not None:
                update["state_dir"] = _local_path(base, host.state_dir)
        hosts[name] = host.model_copy(update=update)
    mirror = spec.mirror
    if mirror.ca_file is not None:
        mirror = mirror.model_copy(update={"ca_file": _local_path(base, mirror.ca_file)})
    if local(mirror.host):
        mirror = mirror.model_copy(update={"directory": _local_path(base, mirror.directory)})
    allowlist = spec.allowlist.model_copy(
        update={"requirements": [_local_path(base, p) for p in spec.allowlist.requirements]}
    )
    workers = [_resolve_worker(w, base, local(w.host)) for w in spec.workers]
    return spec.model_copy(
        update={"hosts": hosts, "mirror": mirror, "allowlist": allowlist, "workers": workers}
    )


def load_spec(path: str | os.PathLike[str]) -> LoadedSpec:
    """Load, validate and resolve the spec at `path`; one `SpecError` names every fault."""
    file = Path(path)
    name = str(path)
    text = _read(file)
    data, positions = _parse(name, text)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        located = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = _describe(error, positions)
            if loc and loc[-1] == "[key]":  # a dict's key (a host's or lambda's name) is at fault
                noun = "lambda name" if loc[-3:-2] == ("lambdas",) else "host name"
                loc, message = loc[:-1], f"{noun} {message}"
            located.append(
                (loc, message, error["type"] == "extra_forbidden" or len(loc) != len(error["loc"]))
            )
        raise _report(name, positions, located) from None
    found = problems(spec)
    if found:
        raise _report(name, positions, [(loc, message, False) for loc, message in found])
    base = file.resolve().parent
    digest = hashlib.sha256(text.encode()).hexdigest()
    resolved = _resolve_paths(spec, base)
    missing = _missing_local_files(resolved)
    if missing:
        raise _report(name, positions, [(loc, message, False) for loc, message in missing])
    return LoadedSpec(spec=resolved, path=file.resolve(), digest=digest)
