"""A Python program that must be runnable on a host: found on PATH, or installed in a venv."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError


@dataclass(frozen=True)
class PythonTool(Resource):
    kind = "python_tool"
    program: str
    requirement: str
    venv: str

    @property
    def id(self) -> str:
        return f"program {self.program}"

    @property
    def venv_program(self) -> str:
        return posixpath.join(self.venv, "bin", self.program)

    def request(self) -> FactRequest:
        return FactRequest.finding(self.program, self.venv_program).merge(
            FactRequest(programs=frozenset({"python3"}))
        )

    def observe(self, facts: Facts) -> str:
        return str(facts.find(self.program, self.venv_program))

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        found = facts.find(self.program, self.venv_program)
        if found:
            return self.unchanged(f"{self.program} found at {found}")
        if not facts.programs.get("python3"):
            raise ResourceError(
                f"{self.program} is not installed and python3 is missing, so it cannot be "
                f"installed; install python3 (with venv) or {self.program} on this host"
            )
        return Change(self, "run", f"install {self.requirement} into {self.venv}")

    def apply(self, conn: Connection) -> None:
        for argv in (
            ("python3", "-m", "venv", self.venv),
            (posixpath.join(self.venv, "bin", "pip"), "install", "--quiet", self.requirement),
        ):
            result = conn.run(argv, timeout=1800)
            if not result.ok:
                raise ResourceError(
                    f"`{' '.join(argv)}` failed: {(result.stderr or result.stdout).strip()[-800:]}"
                )

    def provides(self) -> frozenset[str]:
        return frozenset({self.venv_program})


def locate(conn: Connection, program: str, venv_program: str) -> str:
    """The program to run: the one on PATH, else the one olmirror installed."""
    found = conn.gather(FactRequest.finding(program, venv_program)).find(program, venv_program)
    if found is None:
        raise ResourceError(f"{program} is not installed on this host")
    return found
