"""Progress of long steps (a mirror sync), reported to whoever runs the apply.

A context variable keeps resources free of any knowledge of the terminal: apply
sets the reporter for each host's thread, a resource calls `report`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Reporter = Callable[[str, bool], None]

_reporter: ContextVar[Reporter | None] = ContextVar("olmirror_reporter", default=None)


def report(text: str, *, final: bool = False) -> None:
    """Say how a long step is going; `final` marks its closing summary."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(text, final)


@contextmanager
def reporting_to(reporter: Reporter) -> Iterator[None]:
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
