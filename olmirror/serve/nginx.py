"""A dedicated nginx instance, started when it is not running and reloaded when its config changed.

The instance is nginx's own master process run with `-c <folder>/nginx.conf -p <folder>/`,
so it needs no root, no systemd and nothing in /etc, and reloading it touches no other
site. Its pid file, logs and temp folders all live in `folder`.

Whether it runs is read in the plan's one round trip by a small read-only check on the
host: the pid in nginx's pid file must be alive and be an nginx master started with this
config. A pid file alone would lie after a SIGKILL (or the OOM killer), which leaves it
behind, and after a reboot, when its pid may belong to another process.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from dataclasses import dataclass

from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts
from olmirror.remote import source
from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.serve.http_check import log_tail

# How long nginx's daemon may take to write its pid file after `nginx` returns.
START_WAIT = 15.0
# How long a graceful stop may take: downloads in flight are served to the end.
STOP_WAIT = 60.0

# Runs on the host with its python3: prints the master's pid, or why there is none (exit 1).
MASTER = source("nginx_master")  # run on the host with its python3


@dataclass(frozen=True)
class Nginx(Resource):
    kind = "nginx"
    host: str  # the host's name in the spec, for messages
    folder: str
    listen: str
    program: str = "nginx"
    # Debian puts nginx in /usr/sbin, which is not on a non-root user's PATH.
    fallbacks: tuple[str, ...] = ("/usr/sbin/nginx",)

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
    def id(self) -> str:
        return f"nginx -c {self.conf}"

    @property
    def master_check(self) -> tuple[str, ...]:
        """The read-only command that prints the master's pid, or fails saying why not."""
        return ("python3", "-I", "-S", "-c", MASTER, self.pid_file, self.conf)

    def _args(self) -> tuple[str, ...]:
        """Every nginx command names the config, prefix and log, so none reads /etc or /var."""
        return ("-c", self.conf, "-p", self.folder.rstrip("/") + "/", "-e", self.error_log)

    def request(self) -> FactRequest:
        return FactRequest.finding(self.program, *self.fallbacks).merge(
            FactRequest(commands=frozenset({self.master_check}))
        )

    def _found(self, facts: Facts) -> str | None:
        return facts.find(self.program, *self.fallbacks)

    def observe(self, facts: Facts) -> str:
        master = facts.command(self.master_check)
        return f"{self._found(facts)}:{master.stdout.strip() if master.ok else 'stopped'}"

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        if self._found(facts) is None:
            raise ResourceError(
                f"nginx is not installed on host {self.host!r} (no `{self.program}` on PATH or in "
                f"{', '.join(self.fallbacks)}), and serve.backend http needs it; install it there "
                "with `apt-get install nginx`, then run apply again"
            )
        master = facts.command(self.master_check)
        if not master.ok:
            why = master.stderr.strip().splitlines()[-1:] or ["not running"]
            return Change(self, "run", f"start nginx on {self.listen} (now: {why[0]})")
        pid = master.stdout.strip()
        if self.conf in pending:
            return Change(self, "run", f"reload nginx (pid {pid}): {self.conf} changed")
        return self.unchanged(f"nginx (pid {pid}) serves on {self.listen}")

    def apply(self, conn: Connection) -> None:
        program = self._locate(conn)
        _must(conn, (program, "-t", *self._args()), f"nginx rejects {self.conf}")
        if conn.run(self.master_check, timeout=60).ok:
            # A reload, or an instance started by hand with this config: either way it
            # reads the new config.
            _must(conn, (program, *self._args(), "-s", "reload"), "nginx did not reload")
            return
        _must(conn, (program, *self._args()), f"nginx did not start on {self.listen}")
        # nginx returns once its daemon forked; the daemon writes the pid file just after.
        deadline = time.monotonic() + START_WAIT
        while not conn.run(self.master_check, timeout=60).ok:
            if time.monotonic() > deadline:
                raise ResourceError(
                    f"nginx started but no master process appeared in {self.pid_file} within "
                    f"{START_WAIT:.0f} s{log_tail(conn, self.error_log)}"
                )
            time.sleep(0.05)

    def provides(self) -> frozenset[str]:
        return frozenset({self.pid_file})

    def _locate(self, conn: Connection) -> str:
        found = self._found(conn.gather(FactRequest.finding(self.program, *self.fallbacks)))
        if found is None:
            raise ResourceError(
                f"nginx is not installed on host {self.host!r}; install it there with "
                "`apt-get install nginx`"
            )
        return found


@dataclass(frozen=True)
class NginxStopped(Resource):
    """olmirror's nginx instance for a mirror that is no longer served over http: stopped.

    Only its pid file is read in the plan (no command), so a mirror that never ran nginx
    pays nothing; a pid file that outlived its master is removed.
    """

    kind = "nginx_stopped"
    host: str  # the host's name in the spec, for messages
    folder: str

    @property
    def _instance(self) -> Nginx:
        return Nginx(self.host, self.folder, listen="")

    @property
    def id(self) -> str:
        return f"nginx stopped -c {self._instance.conf}"

    def request(self) -> FactRequest:
        return FactRequest(paths=frozenset({self._instance.pid_file}))

    def observe(self, facts: Facts) -> str:
        return str(facts.path(self._instance.pid_file).kind)

    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        if facts.path(self._instance.pid_file).kind is None:
            return self.unchanged("no nginx of olmirror's runs for this mirror")
        return Change(
            self,
            "run",
            f"stop olmirror's nginx (-c {self._instance.conf}): the mirror is no longer served "
            "over http",
        )

    def apply(self, conn: Connection) -> None:
        nginx = self._instance
        master = conn.run(nginx.master_check, timeout=60)
        if master.ok:
            # Its pid, not `nginx -s quit`: that would need the program and a config that
            # still parses. QUIT lets downloads in flight finish.
            pid = master.stdout.strip()
            _must(conn, ("kill", "-QUIT", pid), f"nginx (pid {pid}) did not stop")
            deadline = time.monotonic() + STOP_WAIT
            while conn.run(nginx.master_check, timeout=60).ok:  # a zombie is not a master
                if time.monotonic() > deadline:
                    raise ResourceError(
                        f"nginx (pid {pid}) was asked to stop but still runs after "
                        f"{STOP_WAIT:.0f} s{log_tail(conn, nginx.error_log)}"
                    )
                time.sleep(0.05)
        # nginx removes its pid file on exit; one left by a master that was killed, or by a
        # reboot, goes too.
        _must(conn, ("rm", "-f", "--", nginx.pid_file), "cannot remove the pid file")


def _must(conn: Connection, argv: tuple[str, ...], what: str) -> CommandResult:
    """Run `argv`; a failure is a ResourceError that says `what`, with nginx's own words."""
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
