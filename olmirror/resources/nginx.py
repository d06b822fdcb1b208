"""A dedicated nginx instance, started when it is not running and reloaded when its config changed.

The instance is nginx's own master process run with `-c <folder>/nginx.conf -p <folder>`,
so it needs no root, no systemd and nothing in /etc, and reloading it touches no other
site. Its pid file, logs and temp folders all live in `folder`.

A plan only reads files, so whether the master still runs is read through a link
`<folder>/master -> /proc/<pid>` that olmirror sets after each start: its `cmdline`
names nginx and this config while that process lives, and vanishes when it dies,
even by SIGKILL (which leaves nginx's own pid file behind).
"""

from __future__ import annotations

import posixpath
import shlex
import time
from dataclasses import dataclass

from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts
from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.resources.http_check import log_tail

# How long nginx's daemon may take to write its pid file after `nginx` returns.
START_WAIT = 15.0


def _master_of(cmdline: bytes | None, conf: str) -> bool:
    """Whether a /proc cmdline is an nginx master started with this config file."""
    text = (cmdline or b"").replace(b"\0", b" ").decode(errors="replace")
    return text.startswith("nginx: master process") and f" -c {conf} " in f"{text} "


def _pid(text: bytes | None) -> int | None:
    value = (text or b"").decode(errors="replace").strip()
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class Nginx(Resource):
    kind = "nginx"
    host: str  # the host's name in the spec, for messages
    folder: str
    listen: str
    program: str = "nginx"
    # Debian puts nginx in /usr/sbin, which is not on a non-root user's PATH.
    fallbacks: tuple[str, ...] = ("/usr/sbin/nginx",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fallbacks", tuple(self.fallbacks))

    @property
    def conf(self) -> str:
        return posixpath.join(self.folder, "nginx.conf")

    @property
    def pid_file(self) -> str:
        return posixpath.join(self.folder, "nginx.pid")

    @property
    def error_log(self) -> str:
        return posixpath.join(self.folder, "error.log")

    @property
    def access_log(self) -> str:
        return posixpath.join(self.folder, "access.log")

    @property
    def link(self) -> str:
        return posixpath.join(self.folder, "master")

    @property
    def id(self) -> str:
        return f"nginx -c {self.conf}"

    def _args(self) -> tuple[str, ...]:
        """Every nginx command names the config, prefix and log, so none reads /etc or /var."""
        return ("-c", self.conf, "-p", self.folder.rstrip("/") + "/", "-e", self.error_log)

    def request(self) -> FactRequest:
        return FactRequest(
            paths=frozenset(self.fallbacks),
            content=frozenset({self.pid_file, posixpath.join(self.link, "cmdline")}),
            programs=frozenset({self.program}),
        )

    def _found(self, facts: Facts) -> str | None:
        on_path = facts.programs.get(self.program)
        if on_path:
            return on_path
        return next((p for p in self.fallbacks if facts.path(p).kind == "file"), None)

    def _running(self, facts: Facts) -> str | None:
        """'pid N' of this instance's master if the link says it still runs, else None."""
        cmdline = facts.path(posixpath.join(self.link, "cmdline"))
        if cmdline.kind != "file" or not _master_of(cmdline.content, self.conf):
            return None
        pid = _pid(facts.path(self.pid_file).content)
        return f"pid {pid}" if pid else "pid file missing"

    def observe(self, facts: Facts) -> str:
        running = self._running(facts)
        return f"{self._found(facts)}:{'stopped' if running is None else running}"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        if self._found(facts) is None:
            raise ResourceError(
                f"nginx is not installed on host {self.host!r} (no `{self.program}` on PATH or in "
                f"{', '.join(self.fallbacks)}), and serve.backend http needs it; install it there "
                "with `apt-get install nginx`, then run apply again"
            )
        pid = self._running(facts)
        if pid is None:
            stale = _pid(facts.path(self.pid_file).content)
            gone = f"; pid {stale} of its pid file is gone" if stale else ""
            return Change(self, "run", f"start nginx on {self.listen} ({self.conf}{gone})")
        if self.conf in pending:
            return Change(self, "run", f"reload nginx ({pid}): {self.conf} changed")
        return self.unchanged(f"nginx ({pid}) serves on {self.listen}")

    def apply(self, conn: Connection) -> None:
        program = self._locate(conn)
        self._must(conn, (program, "-t", *self._args()), f"nginx rejects {self.conf}")
        pid = self._live_pid(conn)
        if pid is None:
            self._must(conn, (program, *self._args()), f"nginx did not start on {self.listen}")
            pid = self._wait_for_master(conn)
        else:
            # Started by hand with this config, or a reload: either way the new config is read.
            self._must(conn, (program, *self._args(), "-s", "reload"), "nginx did not reload")
        self._must(conn, ("ln", "-sfn", f"/proc/{pid}", self.link), f"cannot link {self.link}")

    def provides(self) -> frozenset[str]:
        return frozenset({self.pid_file, self.link})

    def _locate(self, conn: Connection) -> str:
        facts = conn.gather(
            FactRequest(paths=frozenset(self.fallbacks), programs=frozenset({self.program}))
        )
        found = self._found(facts)
        if found is None:
            raise ResourceError(
                f"nginx is not installed on host {self.host!r}; install it with "
                "`apt-get install nginx`"
            )
        return found

    def _live_pid(self, conn: Connection) -> int | None:
        """The master named by the pid file, if it lives and runs this config."""
        facts = conn.gather(FactRequest(content=frozenset({self.pid_file})))
        pid = _pid(facts.path(self.pid_file).content)
        if pid is None:
            return None
        cmdline = f"/proc/{pid}/cmdline"
        fact = conn.gather(FactRequest(content=frozenset({cmdline}))).path(cmdline)
        return pid if fact.kind == "file" and _master_of(fact.content, self.conf) else None

    def _wait_for_master(self, conn: Connection) -> int:
        """nginx returns once its daemon forked; the daemon writes the pid file just after."""
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            pid = self._live_pid(conn)
            if pid is not None:
                return pid
            time.sleep(0.05)
        raise ResourceError(
            f"nginx started but no master process appeared in {self.pid_file} within "
            f"{START_WAIT:.0f} s{log_tail(conn, self.error_log)}"
        )

    def _must(self, conn: Connection, argv: tuple[str, ...], what: str) -> CommandResult:
        result = conn.run(argv, timeout=120)
        if not result.ok:
            said = " | ".join(
                line.strip()
                for line in (result.stderr + result.stdout).splitlines()
                if line.strip() and "[notice]" not in line
            )
            said = said[-800:] or "no output"
            raise ResourceError(f"{what}: `{shlex.join(argv)}` exited {result.returncode}: {said}")
        return result
