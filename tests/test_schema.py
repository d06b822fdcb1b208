"""The committed JSON Schema is the one the models generate."""

from __future__ import annotations

import json
from pathlib import Path

from olmirror.schema import spec_schema_text

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "olmirror.schema.json"


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA.read_text() == spec_schema_text(), (
        "schemas/olmirror.schema.json is out of date: run "
        "`olmirror schema > schemas/olmirror.schema.json` and commit it"
    )


def test_schema_command_prints_it(cli) -> None:
    result = cli("schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"version", "mirror"}
    assert "workers" in schema["properties"]
