"""A host's connection for one apply: its file changes go to the host together.

Resources write files and make folders one at a time; over SSH each would be a round
trip. Here they wait, and go in one batch (`Connection.change_files`) with the next step
that needs an answer from the host (a command, a read, facts) or at the end. Reads of
files whose content the facts gathered under the apply lock hold, or that this apply
wrote, are answered here, until a command runs (which may change anything).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from olmirror.connection.base import (
    CommandResult,
    Connection,
    FactRequest,
    Facts,
    FileChange,
    PartlyDone,
    PathFact,
    Run,
    WriteFile,
)


class Deferred(Exception):
    """A change that waited failed when it was sent; `owner` names whose it was."""

    def __init__(self, owner: str, cause: Exception) -> None:
        super().__init__(owner, cause)
        self.owner, self.cause = owner, cause


class Batched(Connection):
    """`conn`, with file changes held back; `owner` names whose the next ones are, and
    `on_sent` is told after each batch that reached the host."""

    def __init__(self, conn: Connection, facts: Facts | None, on_sent: Callable[[], None]) -> None:
        self.conn, self.name, self.python = conn, conn.name, conn.python
        self.owner = ""
        self._on_sent = on_sent
        self._waiting: list[tuple[str, FileChange]] = []
        self._known: dict[str, bytes | None] = {}  # path -> content (None: absent)
        for path, fact in (facts.paths if facts else {}).items():
            if fact.kind is None or (fact.kind == "file" and fact.content is not None):
                self._known[path] = fact.content

    @property
    def waiting(self) -> set[str]:
        """The owners of changes not yet sent."""
        return {owner for owner, _ in self._waiting}

    def flush(self) -> None:
        """Send what waits, in order; `Deferred` when one change fails (those before it
        were made, and are told to `on_sent`; those after it are dropped)."""
        if not self._waiting:
            return
        changes = [change for _, change in self._waiting]
        try:
            self.conn.change_files(changes)
        except PartlyDone as exc:
            owner = self._waiting[exc.done][0]
            self._waiting = self._waiting[exc.done :]
            self._on_sent()
            self._waiting = []
            raise Deferred(owner, exc.cause) from None
        except Exception as exc:
            owner = self._waiting[0][0]
            self._waiting = []
            raise Deferred(owner, exc) from None
        self._waiting = []
        self._on_sent()

    def script(self, source: str, *args: str) -> tuple[str, ...]:
        return self.conn.script(source, *args)

    def change_files(self, changes: Sequence[FileChange]) -> None:
        for change in changes:
            self._waiting.append((self.owner, change))
            if isinstance(change, WriteFile):
                self._known[change.path] = change.data
            elif change.path in self._known:  # a folder where a file was: unknown now
                del self._known[change.path]

    def _change_one(self, change: FileChange) -> None:
        self.change_files([change])

    def read_file(self, path: str) -> bytes:
        if path in self._known:
            content = self._known[path]
            if content is None:
                raise FileNotFoundError(2, "No such file or directory", path)
            return content
        self.flush()
        return self.conn.read_file(path)

    def _run(self, argv: tuple[str, ...], how: Run) -> CommandResult:
        self.flush()
        self._known = {}
        return self.conn.run(
            argv, stdin=how.stdin, timeout=how.timeout, env=how.env, on_line=how.on_line
        )

    def stat(self, path: str) -> PathFact:
        self.flush()
        return self.conn.stat(path)

    def gather(self, request: FactRequest) -> Facts:
        self.flush()
        self._known = {}
        return self.conn.gather(request)

    def hold_lock(self, state_dir: str | None) -> None:
        self.conn.hold_lock(state_dir)
