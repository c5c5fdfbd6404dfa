"""Decoding: every kind of bad payload gets its own reason; good ones decode to typed events."""

from __future__ import annotations

import json

import pytest

from repricer.schemas import CatalogItem, Click, ControlCommand, Order, Rejection, decode, ts_ms

GOOD_ORDER = {
    "order_id": "o1",
    "ts": "2026-01-01T00:00:00+01:00",
    "sku": "A-1",
    "qty": 2,
    "unit_price": 9.5,
}


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"order_id": "o1", "ts": ', "malformed_json"),
        (b"", "malformed_json"),
        (b"\xff\xfe", "not_utf8"),
        (enc([1, 2]), "wrong_type"),
        (enc({**GOOD_ORDER, "ts": "2026-01-01T00:00:00"}), "naive_timestamp"),
        (enc({**GOOD_ORDER, "ts": "3026-01-01T00:00:00Z"}), "out_of_range"),
        (enc({**GOOD_ORDER, "ts": 5}), "out_of_range"),
        (enc({**GOOD_ORDER, "qty": 0}), "out_of_range"),
        (enc({**GOOD_ORDER, "qty": 10**12}), "out_of_range"),
        (enc({**GOOD_ORDER, "unit_price": 0}), "out_of_range"),
        (enc({**GOOD_ORDER, "unit_price": -1.5}), "out_of_range"),
        (enc({**GOOD_ORDER, "qty": "2"}), "wrong_type"),
        (enc({**GOOD_ORDER, "unit_price": "NaN"}), "wrong_type"),
        (b'{"order_id":"o","ts":1767225600000,"sku":"A","qty":1,"unit_price":NaN}', "non_finite"),
        (
            b'{"order_id":"o","ts":1767225600000,"sku":"A","qty":1,"unit_price":-Infinity}',
            "non_finite",
        ),
        (
            b'{"order_id":"o","ts":1767225600000,"sku":"A","qty":1,"unit_price":nope}',
            "malformed_json",
        ),
        (enc({**GOOD_ORDER, "qty": 1e12}), "wrong_type"),
        (b'{"order_id":"o","ts":1767225600000,"sku":"A","qty":1,"unit_price":1e999}', "non_finite"),
        (enc({k: v for k, v in GOOD_ORDER.items() if k != "sku"}), "missing_field"),
        (enc({**GOOD_ORDER, "sku": ""}), "out_of_range"),
        (enc({**GOOD_ORDER, "sku": "bad sku with spaces"}), "invalid_value"),
        (enc({**GOOD_ORDER, "currency": "euro"}), "invalid_value"),
    ],
)
def test_bad_orders_are_rejected_with_reason(payload: bytes, reason: str) -> None:
    result = decode(payload, Order)
    assert isinstance(result, Rejection)
    assert result.reason == reason, result.detail
    assert result.detail


def test_oversize_is_rejected_before_parsing() -> None:
    payload = enc({**GOOD_ORDER, "pad": "x" * 2000})
    assert decode(payload, Order, max_bytes=1000) == Rejection(
        reason="oversize", detail=f"{len(payload)} bytes > limit 1000"
    )
    assert isinstance(decode(payload, Order, max_bytes=4000), Order)


def test_deeply_nested_unknown_field_is_handled() -> None:
    nested = "[" * 5000 + "]" * 5000
    payload = enc(GOOD_ORDER)[:-1] + b', "extra": ' + nested.encode() + b"}"
    result = decode(payload, Order, max_bytes=1 << 20)
    assert result == Rejection(reason="too_deep", detail="JSON nested deeper than 16 levels")
    shallow = enc({**GOOD_ORDER, "extra": [[[{"a": [1]}]]]})
    assert isinstance(decode(shallow, Order), Order)
    # 17 levels is too deep; brackets inside strings are text, not nesting
    assert decode(enc({**GOOD_ORDER, "x": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}), Order).reason == (  # type: ignore[union-attr]
        "too_deep"
    )
    assert isinstance(decode(enc({**GOOD_ORDER, "x": "[" * 100, "y": '"{' * 50}), Order), Order)


def test_events_from_beyond_the_allowed_lead_are_rejected() -> None:
    at = 1_767_225_600_000
    ok = decode(enc({**GOOD_ORDER, "ts": at}), Order, not_after_ms=at)
    assert isinstance(ok, Order)
    late = decode(enc({**GOOD_ORDER, "ts": at + 1}), Order, not_after_ms=at)
    assert isinstance(late, Rejection) and late.reason == "future_timestamp"


def test_timestamps_with_offset_and_epoch_ms_agree() -> None:
    a = decode(enc({**GOOD_ORDER, "ts": "2026-01-01T01:00:00+01:00"}), Order)
    b = decode(enc({**GOOD_ORDER, "ts": 1767225600000}), Order)
    assert isinstance(a, Order) and isinstance(b, Order)
    assert ts_ms(a.ts) == ts_ms(b.ts) == 1767225600000


def test_unknown_fields_are_ignored() -> None:
    result = decode(enc({**GOOD_ORDER, "channel": "app"}), Order)
    assert isinstance(result, Order) and result.qty == 2


def test_click_catalog_and_control_decode() -> None:
    click = decode(
        enc({"event_id": "e", "ts": 1767225600000, "session_id": "s", "sku": "A", "type": "view"}),
        Click,
    )
    assert isinstance(click, Click) and click.type == "view"
    bad_click = decode(
        enc({"event_id": "e", "ts": 1767225600000, "session_id": "s", "sku": "A", "type": "buy"}),
        Click,
    )
    assert isinstance(bad_click, Rejection) and bad_click.reason == "invalid_value"
    cat = decode(
        enc({"sku": "A", "cost": 1, "base_price": 2, "min_price": 1.5, "max_price": 3}), CatalogItem
    )
    assert isinstance(cat, CatalogItem)
    inverted = decode(
        enc({"sku": "A", "cost": 1, "base_price": 2, "min_price": 5, "max_price": 3}), CatalogItem
    )
    assert isinstance(inverted, Rejection) and inverted.reason == "invalid_value"
    ctl = decode(enc({"sku": "*", "action": "freeze", "who": "ops"}), ControlCommand)
    assert isinstance(ctl, ControlCommand) and ctl.action == "freeze"
