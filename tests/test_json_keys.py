"""JSON document keys: set what is managed, keep every other key, its order and the layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmirror.connection import FactRequest, LocalConnection
from olmirror.resources import JsonKeys, ResourceError

CONN = LocalConnection()


def _converge(path: Path, values: dict[tuple[str, ...], object]) -> str:
    resource = JsonKeys(str(path), tuple(values.items()))
    change = resource.plan(CONN.gather(resource.request()), frozenset())
    if change.changes:
        resource.apply(CONN)
    return change.action


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{\n  "a": 1,\n  "pip_mirror": "",\n  "z": {\n    "k": [\n      1\n    ]\n  }\n}\n',
            '{\n  "a": 1,\n  "pip_mirror": "/w",\n  "z": {\n    "k": [\n      1\n    ]\n  }\n}\n',
        ),
        (
            '{\n    "a": 1,\n    "pip_mirror": "",\n    "z": {}\n}',
            '{\n    "a": 1,\n    "pip_mirror": "/w",\n    "z": {}\n}',
        ),
        (
            '{\n\t"a": 1,\n\t"pip_mirror": "",\n\t"z": []\n}\n',
            '{\n\t"a": 1,\n\t"pip_mirror": "/w",\n\t"z": []\n}\n',
        ),
        ('{"a": 1, "pip_mirror": "", "z": "ü"}', '{"a": 1, "pip_mirror": "/w", "z": "ü"}'),
    ],
    ids=["two-spaces", "four-spaces-no-final-newline", "tabs", "one-line"],
)
def test_layout_and_other_keys_are_kept(tmp_path: Path, text: str, expected: str) -> None:
    """Documents laid out as OpenLambda writes them change only in the managed value."""
    path = tmp_path / "config.json"
    path.write_text(text)
    assert _converge(path, {("pip_mirror",): "/w"}) == "update"
    assert path.read_text() == expected


def test_nested_keys_are_created_and_nothing_written_when_equal(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "docker": {\n    "runtime": ""\n  }\n}\n')
    values = {("docker", "base_image"): "ol-min", ("features", "import_cache"): "tree"}
    assert _converge(path, values) == "update"
    assert json.loads(path.read_text()) == {
        "docker": {"runtime": "", "base_image": "ol-min"},
        "features": {"import_cache": "tree"},
    }
    mtime = path.stat().st_mtime_ns
    assert _converge(path, values) == "none"
    assert path.stat().st_mtime_ns == mtime


def test_a_type_change_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"port": "5000"}')
    assert _converge(path, {("port",): 5000}) == "update"
    assert json.loads(path.read_text()) == {"port": 5000}


def test_the_file_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0o640)
    _converge(path, {("pip_mirror",): "x"})
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_scalar_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"docker": "none"}')
    resource = JsonKeys(str(path), ((("docker", "base_image"), "ol-min"),))
    resource.plan(CONN.gather(FactRequest(content=frozenset({str(path)}))), frozenset())
    with pytest.raises(ResourceError, match="'docker' holds a str, not an object"):
        resource.apply(CONN)


def test_a_missing_file_is_an_error_unless_an_earlier_change_creates_it(tmp_path: Path) -> None:
    path = str(tmp_path / "config.json")
    resource = JsonKeys(path, ((("pip_mirror",), "x"),))
    facts = CONN.gather(resource.request())
    with pytest.raises(ResourceError, match="does not exist"):
        resource.plan(facts, frozenset())
    change = resource.plan(facts, frozenset({path}))
    assert change.diff == ('+ pip_mirror = "x"',)


def test_keys_that_must_be_absent_are_removed_and_the_rest_kept(tmp_path: Path) -> None:
    """A worker moved from an http mirror to a filesystem one loses its `mirror_host`."""
    path = tmp_path / "config.json"
    path.write_text('{\n  "pip_mirror": "http://m:8080",\n  "mirror_host": "m",\n  "z": 1\n}\n')
    resource = JsonKeys(str(path), ((("pip_mirror",), "/w"),), absent=(("mirror_host",),))
    change = resource.plan(CONN.gather(resource.request()), frozenset())
    assert change.diff == ('~ pip_mirror: "http://m:8080" -> "/w"', '- mirror_host (was "m")')
    resource.apply(CONN)
    assert path.read_text() == '{\n  "pip_mirror": "/w",\n  "z": 1\n}\n'
    again = resource.plan(CONN.gather(resource.request()), frozenset())
    assert not again.changes
