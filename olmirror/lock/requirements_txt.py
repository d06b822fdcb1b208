"""requirements.txt, read and written in one place.

Read: pip's requirements format as the spec's files and a lambda's `requirements.in` hold
it (logical lines across backslashes, comments, `--hash` options dropped, `-r` includes
followed, any other option refused: the mirror decides the index), each requirement with
the "file:line" it came from. uv's compiled output, with its `# via` annotations (line
style). Written: a pinned closure in pip-compile's format, with its `# via` lines (split
style, pip-compile's default), as `tests/test_pip_compile_format.py` checks against real
pip-compile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from olmirror.errors import SpecError

REQUESTED = "(requested)"  # a `via` entry: the set asks for this requirement itself
_HASH_OPTION = re.compile(r"\s--hash[=\s]\S+")
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?", re.IGNORECASE)
_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s*=\s*|\s+|(?=[^\s-]))(\S.*)$")


@dataclass(frozen=True)
class ParsedRequirements:
    """A requirements file's requirements, `-r` includes and faults, each with "file:line"."""

    requirements: tuple[tuple[str, str], ...]
    includes: tuple[tuple[str, str], ...]
    problems: tuple[tuple[str, str], ...]


def parse_requirements(text: str, where: str) -> ParsedRequirements:
    """Read pip requirements text; `where` names the file in every "file:line"."""
    requirements, includes, problems = [], [], []
    for number, raw in _logical_lines(text):
        line = _HASH_OPTION.sub("", raw.split(" #")[0]).strip()
        source = f"{where}:{number}"
        if not line or line.startswith("#"):
            continue
        if include := _INCLUDE.match(line):
            includes.append((include[1].strip(), source))
        elif line.startswith("-"):
            problems.append(
                (
                    source,
                    f"option {line.split()[0]!r} is not supported here; the mirror decides the "
                    "index, so list only requirements",
                )
            )
        else:
            try:
                requirement = Requirement(line)
            except InvalidRequirement as exc:
                first = str(exc).splitlines()[0]
                problems.append((source, f"{line!r} is not a PEP 508 requirement ({first})"))
                continue
            if requirement.url:
                problems.append((source, f"{line!r} names a URL; give a name and version"))
            else:
                requirements.append((line, source))
    return ParsedRequirements(tuple(requirements), tuple(includes), tuple(problems))


def read_requirements_file(
    path: Path, seen: frozenset[Path] = frozenset()
) -> list[tuple[str, str]]:
    """(requirement, "file:line") of a pip requirements file, following `-r` includes."""
    if path in seen:
        raise SpecError(f"{path}: includes itself through -r; remove the loop")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise SpecError(
            f"{path}: cannot read this requirements file ({reason}); check the path in the spec"
        ) from None
    parsed = parse_requirements(text, str(path))
    if parsed.problems:
        source, problem = parsed.problems[0]
        raise SpecError(f"{source}: {problem}")
    found = list(parsed.requirements)
    for include, _ in parsed.includes:
        found += read_requirements_file(path.parent / include, seen | {path})
    return found


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined across backslash continuations, each with the number of its first line."""
    lines: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, physical in enumerate(text.splitlines(), start=1):
        start, joined = pending if pending else (number, "")
        if physical.endswith("\\"):
            pending = (start, joined + physical[:-1] + " ")
            continue
        pending = None
        lines.append((start, joined + physical))
    if pending:
        lines.append(pending)
    return lines


def read_compiled(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(sorted "name==version" pins, name -> the names that need it) of uv's compiled output
    (`--annotation-style line`: `name==1.0  # via a, b`)."""
    pins, needed_by = [], {}
    for raw in text.splitlines():
        line, _, comment = raw.partition("#")
        if not line.strip():
            continue
        requirement = Requirement(line.strip())
        (spec,) = requirement.specifier
        name = canonicalize_name(requirement.name)
        pins.append(f"{name}=={spec.version}")
        via = comment.strip().removeprefix("via").strip()
        needed_by[name] = [
            canonicalize_name(p.strip()) for p in via.split(",") if _NAME.fullmatch(p.strip())
        ]
    return sorted(pins), needed_by


def pinned_text(pins: list[str], via: dict[str, list[str]]) -> str:
    """The pins, one a line, each with pip-compile's `# via` lines (`via`: name -> why)."""
    return "".join(_annotated(pin, via.get(pin.partition("==")[0], [])) for pin in pins)


def _annotated(pin: str, why: list[str]) -> str:
    """A pin with pip-compile's `# via` lines (the default, split annotation style)."""
    reasons = ["-r requirements.in" if reason == REQUESTED else reason for reason in why]
    if not reasons:
        return f"{pin}\n"
    if len(reasons) == 1:
        return f"{pin}\n    # via {reasons[0]}\n"
    return f"{pin}\n    # via\n" + "".join(f"    #   {reason}\n" for reason in reasons)
