"""The spec's YAML, read safely and with the position of every value.

PyYAML's composer gives each node its position; we build plain data from the node tree
ourselves so that we can remember where every value came from and refuse duplicate keys,
which PyYAML would silently collapse. Tags other than YAML's core ones, anchors that
nest too deep and documents too large are refused before anything is built.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from olmirror.errors import SpecError
from olmirror.spec.checks import Loc

MAX_SPEC_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 32
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


def yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number"}.get(type(value), type(value).__name__)


def at(name: str, mark: yaml.Mark | None) -> str:
    return f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name


class Positions:
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
        self.positions = Positions()
        self.constructor = yaml.SafeLoader("")
        self.nodes = 0
        self.path: set[int] = set()  # the nodes being built, to catch an alias inside itself
        self.explicit: dict[int, set[int]] = {}

    def build(self, node: yaml.Node, loc: Loc = ()) -> Any:
        self.nodes += 1
        shown = loc_text(loc[:MAX_SHOWN_DEPTH]) + ("..." if len(loc) > MAX_SHOWN_DEPTH else "")
        where = f"{at(self.name, node.start_mark)}: {shown or 'top level'}"
        if id(node) in self.path:
            raise SpecError(
                f"{where}: this alias refers to a value that contains it, so it never ends; "
                "write the value out instead of using '*'"
            )
        if self.nodes > MAX_NODES:
            # Deep inside an expansion the place is of little use; name the top-level key.
            top = at(self.name, self.positions.keys.get(loc[:1], node.start_mark))
            raise SpecError(
                f"{top}: {loc_text(loc[:1]) or 'top level'}: the document expands to more "
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
        where = loc_text(loc) or "top level"
        if id(node) not in self.explicit:
            # Keys written in this mapping, as opposed to those a '<<' merge brings in:
            # only these must be unique; a written key overrides a merged one.
            self.explicit[id(node)] = {id(k) for k, _ in node.value if k.tag != _MERGE}
            try:
                self.constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                raise SpecError(
                    f"{at(self.name, exc.problem_mark)}: {where}: a '<<' merge takes a mapping "
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
                    f"{at(self.name, key_node.start_mark)}: {where}: a key must be a plain "
                    f"name, not a {kind}; remove the '?' or brackets around the key"
                )
            self._check_tag(key_node, f"{at(self.name, key_node.start_mark)}: {where}")
            key = self.constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SpecError(
                    f"{at(self.name, key_node.start_mark)}: {where}: "
                    f"the key {key_node.value!r} is read by YAML as a {yaml_type(key)}, "
                    f"but keys are names; write it in quotes, like '{key_node.value}'"
                )
            if key in first and id(key_node) in explicit:
                raise SpecError(
                    f"{at(self.name, key_node.start_mark)}: {loc_text((*loc, key))}: duplicate "
                    f"key {key!r} (first at line {first[key].line + 1}); YAML would keep only the "
                    "last one, so remove or rename one of them"
                )
            if id(key_node) in explicit:
                first[key] = key_node.start_mark
            self.positions.keys[(*loc, key)] = key_node.start_mark
            out[key] = self.build(value_node, (*loc, key))
        return out


def loc_text(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).replace("_", "a").replace("-", "a").isalnum():
            text += f".{part}" if text else str(part)
        else:
            text += f"[{str(part)!r}]"
    return text


def read_spec_text(path: Path) -> str:
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
    return SpecError(f"{at(name, mark)}: YAML syntax error: {problem}{context}{hint}")


def parse_yaml(name: str, text: str) -> tuple[Any, Positions]:
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(name, exc) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: YAML syntax error: {exc}; save the spec as UTF-8 text") from None
    except _TooDeep as exc:
        raise SpecError(
            f"{at(name, exc.mark)}: the document nests more than {MAX_DEPTH} levels deep; "
            "a spec is only a few levels deep, so check the brackets and indentation"
        ) from None
    if not nodes or nodes[0] is None:
        raise SpecError(
            f"{name}: the spec is empty; it needs at least 'version: 1' and a 'mirror' "
            "(start from playbooks/quickstart.yaml)"
        )
    if len(nodes) > 1:
        where = at(name, nodes[1].start_mark)
        raise SpecError(f"{where}: a spec is one YAML document; remove the second '---'")
    builder = _Builder(name)
    try:
        data = builder.build(nodes[0])
    except yaml.MarkedYAMLError as exc:
        raise SpecError(
            f"{at(name, exc.problem_mark)}: {exc.problem}; write a plain value instead"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{at(name, nodes[0].start_mark)}: the spec must be a mapping of keys "
            f"(version, hosts, mirror, allowlist, workers), not a {type(data).__name__}"
        )
    return data, builder.positions


def json_fault(source: str, text: str, exc: ValidationError, within: Loc = ()) -> str:
    """ "file:line:column: field: what is wrong" for the first fault pydantic found in the
    JSON file `source` (`within`: where the validated part sits in the document); the line
    comes from reading the JSON as YAML, which keeps positions."""
    error = exc.errors()[0]
    if error["type"] == "json_invalid":  # pydantic's message gives the place in the JSON
        return f"{source}: {error['msg']}"
    loc = (*within, *error["loc"])
    mark = None
    with contextlib.suppress(SpecError):
        mark = parse_yaml(source, text)[1].find(loc)  # None: the document itself
    place = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else f"{source}:1:1"
    return f"{place}: {'.'.join(str(part) for part in loc) or 'the top level'}: {error['msg']}"
