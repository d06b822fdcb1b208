"""The connection interface: everything olmirror does to a host goes through it.

Nothing above this layer knows whether a host is this machine or one reached
over SSH.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class PathFact:
    """What a path is on a host: absent (kind None), a file, a directory or something else."""

    kind: str | None
    mode: int | None = None
    size: int | None = None
    sha256: str | None = None
    content: bytes | None = None
    error: str | None = None

    @classmethod
    def from_probe(cls, raw: dict[str, Any]) -> PathFact:
        content = raw.get("content")
        return cls(
            kind=raw.get("kind"),
            mode=raw.get("mode"),
            size=raw.get("size"),
            sha256=raw.get("sha256"),
            content=base64.b64decode(content) if content is not None else None,
            error=raw.get("error"),
        )


@dataclass(frozen=True)
class WriteFile:
    """Replace `path` atomically with `data`; `mode` None keeps the old file's (0644 if new)."""

    path: str
    data: bytes
    mode: int | None = None


@dataclass(frozen=True)
class MakeDir:
    """Create the folder `path` and its missing parents, and give it `mode`."""

    path: str
    mode: int = 0o755


FileChange = WriteFile | MakeDir


class PartlyDone(Exception):
    """`Connection.change_files` made the first `done` changes; the next one failed (`cause`)."""

    def __init__(self, done: int, cause: Exception) -> None:
        super().__init__(done, cause)
        self.done, self.cause = done, cause


@dataclass(frozen=True)
class FactRequest:
    """What a plan needs to know: paths to stat, to hash, to read, and programs to find."""

    paths: frozenset[str] = frozenset()
    content: frozenset[str] = frozenset()
    programs: frozenset[str] = frozenset()
    hashes: frozenset[str] = frozenset()
    commands: frozenset[tuple[str, ...]] = frozenset()
    urls: frozenset[str] = frozenset()
    registries: frozenset[str] = frozenset()  # OpenLambda worker folders whose registry to survey
    trees: frozenset[str] = frozenset()  # folders whose files (recursively) to list

    def merge(self, other: FactRequest) -> FactRequest:
        return FactRequest(
            self.paths | other.paths,
            self.content | other.content,
            self.programs | other.programs,
            self.hashes | other.hashes,
            self.commands | other.commands,
            self.urls | other.urls,
            self.registries | other.registries,
            self.trees | other.trees,
        )

    @classmethod
    def for_program(cls, program: str) -> FactRequest:
        """What tells whether `program` can run: its file when it is a path, else PATH."""
        if "/" in program:
            return cls(paths=frozenset({program}))
        return cls(programs=frozenset({program}))

    @classmethod
    def finding(cls, program: str, *fallbacks: str) -> FactRequest:
        """What `Facts.find` needs: `program` on PATH, and the fallback files."""
        return cls(paths=frozenset(fallbacks), programs=frozenset({program}))

    def as_json(self) -> dict[str, list[str]]:
        return {
            "paths": sorted(self.paths),
            "hashes": sorted(self.hashes),
            "content": sorted(self.content),
            "programs": sorted(self.programs),
            "commands": sorted(list(argv) for argv in self.commands),
            "urls": sorted(self.urls),
            "registries": sorted(self.registries),
            "trees": sorted(self.trees),
        }


@dataclass(frozen=True)
class Facts:
    paths: dict[str, PathFact] = field(default_factory=dict)
    programs: dict[str, str | None] = field(default_factory=dict)
    commands: dict[tuple[str, ...], CommandResult] = field(default_factory=dict)
    # URL -> None when it answered, else why not
    urls: dict[str, str | None] = field(default_factory=dict)
    # worker folder -> what the probe found of its registry (see `probe._registry`)
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # folder -> every file below it, relative to it (empty when the folder is missing;
    # None when it, or the folder above it, is a symbolic link)
    trees: dict[str, list[str] | None] = field(default_factory=dict)

    @classmethod
    def from_probe(cls, raw: dict[str, Any]) -> Facts:
        commands = {}
        for key, done in raw.get("commands", {}).items():
            argv = tuple(json.loads(key))
            commands[argv] = CommandResult(argv, done["returncode"], done["stdout"], done["stderr"])
        return cls(
            paths={p: PathFact.from_probe(f) for p, f in raw["paths"].items()},
            programs=dict(raw["programs"]),
            commands=commands,
            urls=dict(raw.get("urls", {})),
            registries=dict(raw.get("registries", {})),
            trees=dict(raw.get("trees", {})),
        )

    def path(self, path: str) -> PathFact:
        return self.paths[path]

    def find(self, program: str, *fallbacks: str) -> str | None:
        """`program` on PATH, else the first fallback file that exists (see `finding`)."""
        found = self.programs.get(program)
        return found or next((p for p in fallbacks if self.path(p).kind == "file"), None)

    def program_problem(self, program: str) -> str | None:
        """Why `program` (asked for with `FactRequest.for_program`) cannot run, or None."""
        if "/" not in program:
            return None if self.programs.get(program) else "not found on PATH"
        kind = self.path(program).kind
        if kind == "file":
            return None
        return "no such file" if kind is None else f"it is a {kind}"

    def command(self, argv: tuple[str, ...]) -> CommandResult:
        return self.commands[argv]


# python3 from PATH; when that is a script (pyenv's or asdf's shim, which costs a host
# more CPU at every start than olmirror's probe), a real one at a standard path instead,
# named in OLMIRROR_SHIM for the probe to report. Exit 127, as a shell's, without any.
FIND_PYTHON = """
p=$(command -v python3) || { echo "python3: not found" >&2; exit 127; }
case $(head -c 2 -- "$p" 2>/dev/null) in
'#!') for real in /usr/bin/python3 /usr/local/bin/python3; do
        if [ -x "$real" ]; then OLMIRROR_SHIM=$p; export OLMIRROR_SHIM; p=$real; break; fi
      done;;
esac
exec "$p" "$@"
"""


@dataclass(frozen=True)
class Run:
    """How `Connection.run` runs a program (see there)."""

    stdin: bytes | None = None
    timeout: float | None = None
    env: dict[str, str] | None = None
    on_line: Callable[[str], None] | None = None


class Connection(ABC):
    """One host. Implementations: `LocalConnection`, and SSH for remote hosts."""

    name: str
    python: str | None = None  # hosts.<name>.python; None: see FIND_PYTHON

    def script(self, source: str, *args: str) -> tuple[str, ...]:
        """The argv that runs one of olmirror's standard-library programs (`source`) with
        this host's Python, isolated and without `site` (-I -S): no user site folder, no
        PYTHON* variables, and no scan of the packages installed there, which costs a
        host's CPU at every start."""
        python = ("sh", "-c", FIND_PYTHON, "sh") if self.python is None else (self.python,)
        return (*python, "-I", "-S", "-c", source, *args)

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run a program without a shell; a missing program gives returncode 127.

        `env` adds variables to the host's environment for this program only;
        `on_line` sees each line of its stderr as it comes, for progress.
        """
        return self._run(tuple(argv), Run(stdin, timeout, env, on_line))

    @abstractmethod
    def _run(self, argv: tuple[str, ...], how: Run) -> CommandResult:
        """`run`, as each kind of connection does it."""

    @abstractmethod
    def read_file(self, path: str) -> bytes:
        """The file's bytes; FileNotFoundError when absent."""

    @abstractmethod
    def change_files(self, changes: Sequence[FileChange]) -> None:
        """Make `changes` in order, all in one round trip, stopping at the first that fails
        (`PartlyDone`). Every write is atomic (temp file in the same folder, fsync, rename)."""

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Replace `path` atomically; `mode` None keeps the mode of the file being replaced
        (0644 for a new one)."""
        self._change_one(WriteFile(path, data, mode))

    def make_dir(self, path: str, mode: int = 0o755) -> None:
        """Create `path` and missing parents; an existing directory is fine."""
        self._change_one(MakeDir(path, mode))

    def _change_one(self, change: FileChange) -> None:
        try:
            self.change_files([change])
        except PartlyDone as exc:
            raise exc.cause from None

    @abstractmethod
    def stat(self, path: str) -> PathFact:
        """The path's kind and mode, without content."""

    @abstractmethod
    def gather(self, request: FactRequest) -> Facts:
        """Everything `request` asks for, in one round trip."""

    @abstractmethod
    def hold_lock(self, state_dir: str | None) -> None:
        """Take this host's apply lock and hold it until `close`. Another apply holding it
        is an `OlmirrorError`: at once, or over SSH with the next answer from the host (the
        request goes with the next one, so it costs no round trip of its own)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection's resources."""
