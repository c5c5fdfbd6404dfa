"""The checked-in JSON Schema files match the code, and PriceChange v1 stays compatible."""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import msgspec
import pytest

from repricer.schemas import PUBLIC_CONTRACTS, Forecast, PriceChange, encode, events
from repricer.schemas.export import JSON_DIR, rendered

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


def _descriptions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            elif key not in {"const", "default", "enum", "examples"}:
                yield from _descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _descriptions(item)


def test_exported_descriptions_carry_no_docstring_indentation() -> None:
    multi_line = 0
    for name in PUBLIC_CONTRACTS:
        for text in _descriptions(json.loads(rendered(name))):
            lines = text.split("\n")
            multi_line += len(lines) > 1
            indented = [line for line in lines if line[:1].isspace()]
            assert not indented, f"{name}: indented description line {indented[0]!r}"
            assert text == text.strip(), f"{name}: description {text!r} has outer whitespace"
    assert multi_line, "no multi-line description left to check (PriceChange has one)"


def _as_msgspec_0_22(real: Callable[..., Any]) -> Callable[..., Any]:
    """``msgspec.json.schema`` with struct descriptions as msgspec 0.22 rendered them.

    0.22 took a docstring as ``textwrap.dedent(doc).strip("\\r\\n")``, which keeps the
    indentation of every line after the first; 0.23 removes it.
    """

    def schema(type_: Any) -> Any:
        out = real(type_)
        for def_name, body in out.get("$defs", {}).items():
            doc = getattr(getattr(events, def_name, None), "__doc__", None)
            if doc and "description" in body:
                body["description"] = textwrap.dedent(doc).strip("\r\n")
        return out

    return schema


def test_export_does_not_depend_on_msgspec_docstring_formatting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = textwrap.dedent(PriceChange.__doc__ or "").strip("\r\n")
    assert raw != inspect.cleandoc(raw), "PriceChange's docstring no longer tests indentation"
    monkeypatch.setattr(msgspec.json, "schema", _as_msgspec_0_22(msgspec.json.schema))
    assert msgspec.json.schema(PriceChange)["$defs"]["PriceChange"]["description"] == raw
    for name in PUBLIC_CONTRACTS:
        assert rendered(name) == (JSON_DIR / f"{name}.json").read_text(), (
            f"{name}: the export differs under msgspec 0.22's docstring formatting"
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
