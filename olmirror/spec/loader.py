"""Read a spec file into a validated `Spec`, with every error tied to file:line:column:
the YAML with positions (`yaml_reader.py`), the models and checks (`models.py`,
`checks.py`), the error wording (`messages.py`) and the paths (`paths.py`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from olmirror.spec.checks import problems
from olmirror.spec.messages import describe_error, report
from olmirror.spec.models import Spec
from olmirror.spec.paths import missing_local_files, resolve_paths
from olmirror.spec.yaml_reader import parse_yaml, read_spec_text


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    path: Path
    digest: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_spec(path: str | os.PathLike[str]) -> LoadedSpec:
    """Load, validate and resolve the spec at `path`; one `SpecError` names every fault."""
    file = Path(path)
    name = str(path)
    text = read_spec_text(file)
    data, positions = parse_yaml(name, text)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        located = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = describe_error(error, positions)
            if loc and loc[-1] == "[key]":  # a dict's key (a host's or lambda's name) is at fault
                noun = "lambda name" if loc[-3:-2] == ("lambdas",) else "host name"
                loc, message = loc[:-1], f"{noun} {message}"
            located.append(
                (loc, message, error["type"] == "extra_forbidden" or len(loc) != len(error["loc"]))
            )
        raise report(name, positions, located) from None
    found = problems(spec)
    if found:
        raise report(name, positions, [(loc, message, False) for loc, message in found])
    base = file.resolve().parent
    digest = hashlib.sha256(text.encode()).hexdigest()
    resolved = resolve_paths(spec, base)
    missing = missing_local_files(resolved)
    if missing:
        raise report(name, positions, [(loc, message, False) for loc, message in missing])
    return LoadedSpec(spec=resolved, path=file.resolve(), digest=digest)
