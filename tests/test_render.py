"""Colour in the terminal only, as users ask for it."""

from __future__ import annotations

import io

import pytest

from olmirror.render import Painter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "no_color", "coloured"),
    [
        (Terminal(), None, True),
        (Terminal(), "1", False),  # no-color.org: any non-empty value
        (Terminal(), "", True),
        (io.StringIO(), None, False),  # a pipe or a file
    ],
)
def test_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, no_color: str | None, coloured: bool
) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    painted = Painter(stream)("create", "green")
    assert (painted != "create") is coloured
    assert Painter(stream, False)("create", "green") == "create", "--no-color"
