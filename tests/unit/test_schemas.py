"""The checked-in JSON Schema files match the code, and PriceChange v1 stays compatible."""

from __future__ import annotations

import json

import jsonschema
import msgspec

from schemas import PUBLIC_CONTRACTS, Forecast, PriceChange, encode
from schemas.export import JSON_DIR, rendered

# PriceChange v1 as published: these fields may never disappear or change type.
V1_REQUIRED = {
    "event_id": "string",
    "sku": "string",
    "old_price": "number",
    "new_price": "number",
    "currency": "string",
    "decided_at": "integer",
    "effective_at": "integer",
    "window_start": "integer",
    "reasons": "array",
    "forecast": None,
    "elasticity": "number",
    "model_versions": "object",
    "guardrails": "array",
    "policy_version": "string",
}


def test_checked_in_schemas_match_the_code() -> None:
    for name in PUBLIC_CONTRACTS:
        path = JSON_DIR / f"{name}.json"
        assert path.exists(), f"missing {path}: run `python -m schemas.export`"
        assert path.read_text() == rendered(name), (
            f"{path} is stale: run `python -m schemas.export`"
        )


def test_price_change_v1_is_backward_compatible() -> None:
    schema = json.loads((JSON_DIR / "PriceChange.json").read_text())
    body = schema["$defs"]["PriceChange"]
    for field, typ in V1_REQUIRED.items():
        assert field in body["required"], field
        if typ is not None:
            assert body["properties"][field]["type"] == typ, field


def test_encoded_price_change_validates_and_round_trips() -> None:
    pc = PriceChange(
        event_id="x",
        sku="A",
        old_price=10.0,
        new_price=10.5,
        currency="EUR",
        decided_at=1,
        effective_at=1,
        window_start=0,
        reasons=["demand_up"],
        forecast=Forecast(units_at_old=3.0, units_at_new=2.8),
        elasticity=-2.0,
        model_versions={"rule": "v1"},
        guardrails=["max_step"],
        policy_version="rule-v1",
    )
    raw = encode(pc)
    jsonschema.validate(json.loads(raw), json.loads((JSON_DIR / "PriceChange.json").read_text()))
    assert msgspec.json.decode(raw, type=PriceChange) == pc
