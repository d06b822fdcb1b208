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
_retries: ContextVar[Callable[[int], None] | None] = ContextVar("olmirror_retries", default=None)


def report(text: str, *, final: bool = False) -> None:
    """Say how a long step is going; `final` marks its closing summary."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(text, final)


def retried(count: int) -> None:
    """Count requests a step had to try again, for the recap."""
    counter = _retries.get()
    if counter is not None and count:
        counter(count)


@contextmanager
def reporting_to(
    reporter: Reporter, on_retries: Callable[[int], None] | None = None
) -> Iterator[None]:
    token, count_token = _reporter.set(reporter), _retries.set(on_retries)
    try:
        yield
    finally:
        _reporter.reset(token)
        _retries.reset(count_token)
