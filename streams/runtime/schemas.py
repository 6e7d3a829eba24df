"""The JSON Schemas in deploy/schemas, loaded together so cross-file $refs resolve."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from threatroute.streams.config import PACKAGE_DATA

SCHEMA_DIR = PACKAGE_DATA / "schemas"
BASE = "https://threatroute.invalid/schemas/"


@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMA_DIR.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> Draft202012Validator:
    """Validator for a schema by name: indicator, enriched-indicator, alert, feedback,
    dead-letter."""
    registry = _registry()
    schema = registry.contents(f"{BASE}{name}.schema.json")
    return Draft202012Validator(schema, registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(name: str, record: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(name).iter_errors(record)]
