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
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from olmirror.errors import SpecError
from olmirror.spec.checks import Loc, problems
from olmirror.spec.models import LOCAL, Spec

MAX_SPEC_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_REPORTED = 10


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

    def build(self, node: yaml.Node, loc: Loc = ()) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError(
                f"{self.name}: the document expands to more than {MAX_NODES} values "
                "(are YAML aliases nested?); write the spec out plainly"
            )
        self.positions.values[loc] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        first: dict[Any, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(
                    f"{_at(self.name, key_node.start_mark)}: {_loc_text(loc) or 'top level'}: "
                    "a key must be a plain value, not a list or mapping"
                )
            key = self.constructor.construct_object(key_node, deep=True)
            if key in first:
                raise SpecError(
                    f"{_at(self.name, key_node.start_mark)}: {_loc_text((*loc, key))}: duplicate "
                    f"key {key!r} (first at line {first[key].line + 1}); YAML would keep only the "
                    "last one, so remove or rename one of them"
                )
            first[key] = key_node.start_mark
            self.positions.keys[(*loc, key)] = key_node.start_mark
            out[key] = self.build(value_node, (*loc, key))
        return out


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


def _describe(error: dict[str, Any]) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        valid = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {loc[-1]!r}; {hint}valid keys here: {', '.join(valid)}"
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if kind.endswith("_type") or kind in ("literal_error", "string_pattern_mismatch"):
        message += f", got {type(value).__name__} {_short(value)}"
    if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
        message += "; put the value in quotes (YAML reads 3.10 as the number 3.1)"
    return message


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
    if b"\0" in raw:
        raise SpecError(f"{name}: this is a binary file, not a YAML spec; check the -f argument")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{name}:{line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "save it as UTF-8"
        ) from None


def _parse(name: str, text: str) -> tuple[Any, _Positions]:
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        hint = ""
        if "\t" in problem or "'\\t'" in problem:
            hint = "; YAML does not allow tabs for indentation, indent with spaces"
        raise SpecError(f"{_at(name, mark)}: YAML syntax error: {problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: YAML syntax error: {exc}") from None
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
        raise SpecError(f"{_at(name, exc.problem_mark)}: {exc.problem}") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{_at(name, nodes[0].start_mark)}: the spec must be a mapping of keys "
            f"(version, hosts, mirror, allowlist, workers), not a {type(data).__name__}"
        )
    return data, builder.positions


def _local_path(base: Path, path: str) -> str:
    return str((base / os.path.expanduser(path)).resolve(strict=False))


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
    if local(mirror.host):
        mirror = mirror.model_copy(update={"directory": _local_path(base, mirror.directory)})
    allowlist = spec.allowlist.model_copy(
        update={"requirements": [_local_path(base, p) for p in spec.allowlist.requirements]}
    )
    workers = [
        w.model_copy(update={"path": _local_path(base, w.path)}) if local(w.host) else w
        for w in spec.workers
    ]
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
        located = [
            (tuple(e["loc"]), _describe(e), e["type"] == "extra_forbidden") for e in exc.errors()
        ]
        raise _report(name, positions, located) from None
    found = problems(spec)
    if found:
        raise _report(name, positions, [(loc, message, False) for loc, message in found])
    base = file.resolve().parent
    digest = hashlib.sha256(text.encode()).hexdigest()
    return LoadedSpec(spec=_resolve_paths(spec, base), path=file.resolve(), digest=digest)
