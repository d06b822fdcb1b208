"""The JSON Schema of the spec, generated from the models so it can never drift from them."""

from __future__ import annotations

import json

from olmirror.spec import Spec

SCHEMA_ID = "https://olmirror.dev/schemas/olmirror.schema.json"


def spec_schema_text() -> str:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **Spec.model_json_schema(),
    }
    return json.dumps(schema, indent=2) + "\n"
