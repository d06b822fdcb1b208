"""Batched: an apply's file changes held back and sent together, each failure named."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmirror.connection import FactRequest, LocalConnection
from olmirror.connection.batched import Batched, Deferred


def test_changes_wait_for_an_answer_and_a_failure_names_its_owner(tmp_path: Path) -> None:
    conn = LocalConnection()
    config = tmp_path / "config.json"
    config.write_text("as gathered")
    facts = conn.gather(FactRequest(content=frozenset({str(config), str(tmp_path / "none")})))
    config.write_text("changed since: the lock would have prevented it")
    told: list[set[str]] = []
    batched = Batched(conn, facts, lambda: told.append(batched.waiting))

    batched.owner = "a"
    batched.make_dir(str(tmp_path / "a"))
    batched.write_file(str(tmp_path / "a" / "file"), b"A")
    assert not (tmp_path / "a").exists(), "nothing is made before an answer is needed"
    assert batched.read_file(str(config)) == b"as gathered", "read from the facts"
    with pytest.raises(FileNotFoundError):
        batched.read_file(str(tmp_path / "none"))
    assert batched.read_file(str(tmp_path / "a" / "file")) == b"A", "what this apply wrote"
    assert not told

    assert batched.run(["true"]).ok
    assert (tmp_path / "a" / "file").read_bytes() == b"A", "sent before the command"
    assert told == [set()]
    assert batched.read_file(str(config)).startswith(b"changed"), "a command may change files"

    batched.owner = "b"
    batched.write_file(str(tmp_path / "b"), b"B")
    batched.owner = "c"
    batched.write_file(str(tmp_path / "no-folder" / "c"), b"C")
    batched.owner = "d"
    batched.write_file(str(tmp_path / "d"), b"D")
    with pytest.raises(Deferred) as failed:
        batched.flush()
    assert failed.value.owner == "c" and isinstance(failed.value.cause, FileNotFoundError)
    assert told[-1] == {"c", "d"}, "told while b was made and c and d were not"
    assert (tmp_path / "b").exists() and not (tmp_path / "d").exists()
    assert batched.waiting == set()
