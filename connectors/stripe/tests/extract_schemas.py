"""Extract the shapes of the objects the Stripe sandbox serves from Stripe's OpenAPI spec.

Run from the repository root when the spec changes:

    .venv/bin/python connectors/stripe/tests/extract_schemas.py /path/to/stripe_spec3.yaml

It writes ``fixtures/stripe_schemas.json``: for each object, its required fields and, per
property, the JSON types it may take (an expandable id counts as string or object) and whether
it is nullable. Tests validate sandbox responses against it without needing the 4 MB spec.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OBJECTS = (
    "customer",
    "product",
    "price",
    "subscription",
    "subscription_item",
    "invoice",
    "line_item",
    "payment_intent",
    "charge",
    "refund",
    "credit_note",
    "dispute",
    "payout",
    "balance_transaction",
    "event",
    "error",
    "api_errors",
    "test_helpers.test_clock",
    "invoiceitem",
    "deleted_customer",
    "credit_note_line_item",
)


def _types(schema: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        target = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return _types(target, schemas) if "$ref" in target else {target.get("type", "object")}
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            out: set[str] = set()
            for option in schema[key]:
                out |= _types(option, schemas)
            return out
    kind = schema.get("type", "object")
    return {"number" if kind == "number" else kind}


def extract(spec_path: Path) -> dict[str, Any]:
    """Return the compact shapes of :data:`OBJECTS` from the spec at ``spec_path``."""
    spec = yaml.safe_load(spec_path.read_text())
    schemas = spec["components"]["schemas"]
    out: dict[str, Any] = {}
    for name in OBJECTS:
        schema = schemas[name]
        props = {}
        for prop, sub in (schema.get("properties") or {}).items():
            props[prop] = {
                "types": sorted(_types(sub, schemas)),
                "nullable": bool(sub.get("nullable")),
            }
            if sub.get("enum"):
                props[prop]["enum"] = sub["enum"]
        out[name] = {"required": sorted(schema.get("required", [])), "properties": props}
    return out


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/specs/stripe_spec3.yaml")
    target = Path(__file__).parent / "fixtures" / "stripe_schemas.json"
    target.write_text(json.dumps(extract(source), indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")
