"""The sink's columnar path without servers: messages decoded straight into column batches, and
the per-column validation every backend runs before an insert."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from repricer.agents.sink import (
    aggregate_columns,
    batch_rows,
    dead_letter_columns,
    merge_batches,
    price_change_columns,
)
from repricer.infra.clickhouse import TABLES, row_type, rows_to_columns
from repricer.infra.clickhouse.backends import _prepare_columns
from repricer.schemas import (
    ClicksWindow,
    DeadLetter,
    Forecast,
    ForecastRow,
    PriceChange,
    SalesWindow,
    encode,
)

T0 = 1_767_225_600_000
MIN = 60_000
_json = msgspec.json.Encoder()


def _sales(i: int) -> SalesWindow:
    return SalesWindow(
        sku=f"S{i}",
        window_start=T0 + i * MIN,
        window_end=T0 + (i + 1) * MIN,
        orders=i,
        units=2 * i,
        revenue=1.5 * i,
        price=9.99,
        late_events=0,
    )


def _clicks(i: int) -> ClicksWindow:
    return ClicksWindow(
        sku=f"C{i}",
        window_start=T0,
        window_end=T0 + MIN,
        views=10 + i,
        add_to_cart=i,
        remove_from_cart=0,
    )


def _forecast(i: int) -> ForecastRow:
    return ForecastRow(sku=f"F{i}", window_start=T0 + MIN, model="m", predicted=0.5, actual=i)


def _agg(table: str, row: Any) -> bytes:
    return _json.encode({"t": table, "r": row})  # exactly what the window agent sends


def test_row_types_are_the_window_agent_structs() -> None:
    for struct, table in ((SalesWindow, "sales_1m"), (ClicksWindow, "clicks_1m")):
        assert struct.__struct_fields__ == row_type(table).__struct_fields__
    assert ForecastRow.__struct_fields__ == row_type("forecasts").__struct_fields__
    for table in TABLES:
        assert row_type(table).__struct_fields__ == tuple(
            c for c in TABLES[table] if c != "version"
        )


def test_aggregates_decode_into_columns_per_table() -> None:
    values = [_agg("sales_1m", _sales(i)) for i in range(3)]
    values.insert(1, _agg("clicks_1m", _clicks(7)))
    values.append(_agg("forecasts", _forecast(4)))
    out = aggregate_columns(values)
    assert set(out) == {"sales_1m", "clicks_1m", "forecasts"}
    for table, cols in out.items():
        assert set(cols) == set(TABLES[table])
    sales = out["sales_1m"]
    assert sales["sku"] == ["S0", "S1", "S2"]
    assert sales["orders"] == [0, 1, 2]
    assert sales["revenue"] == [0.0, 1.5, 3.0]
    assert sales["version"] == sales["window_end"]
    assert sales["version"] is not sales["window_end"]  # batches are extended column by column
    assert out["clicks_1m"]["views"] == [17]
    assert out["forecasts"]["version"] == [T0 + MIN]
    assert out["forecasts"]["actual"] == [4.0]
    assert batch_rows(out) == {"sales_1m": 3, "clicks_1m": 1, "forecasts": 1}
    # every batch passes the backends' full per-column validation
    for table, cols in out.items():
        assert _prepare_columns(table, cols)[0] == batch_rows(out)[table]


def test_undecodable_or_out_of_range_aggregates_are_left_out_and_reported() -> None:
    good = [_agg("sales_1m", _sales(i)) for i in range(2)]
    bad = [
        b"not json",
        _json.encode({"t": "no_such_table", "r": {}}),
        _agg("sales_1m", msgspec.structs.replace(_sales(5), orders=-1)),  # UInt32
        _agg("sales_1m", msgspec.structs.replace(_sales(5), window_start=-MIN)),  # DateTime
        _json.encode(
            {"t": "forecasts", "r": {**msgspec.to_builtins(_forecast(1)), "actual": None}}
        ),
    ]
    rejected: list[tuple[int, str]] = []
    out = aggregate_columns([good[0], *bad, good[1]], rejected)
    assert out["sales_1m"]["sku"] == ["S0", "S1"]
    assert set(out) == {"sales_1m"}
    # each by its index in the batch (the sink dead-letters it there), with the decoder's reason
    assert [i for i, _ in rejected] == [1, 2, 3, 4, 5]
    assert "malformed" in rejected[0][1].lower() or "json" in rejected[0][1].lower()
    assert all(reason for _, reason in rejected)


def test_price_changes_and_dead_letters_to_columns() -> None:
    change = PriceChange(
        event_id="e1",
        sku="A",
        old_price=10.0,
        new_price=11.0,
        currency="EUR",
        decided_at=T0 + 1_500,
        effective_at=T0 + 2_000,
        window_start=T0,
        reasons=["up"],
        forecast=Forecast(units_at_old=3.0, units_at_new=2.5),
        elasticity=-1.2,
        model_versions={"b": "2", "a": "1"},
        guardrails=[],
        policy_version="p1",
    )
    pc = price_change_columns([encode(change), b"{}"])["price_changes"]
    assert set(pc) == set(TABLES["price_changes"])
    assert pc["forecast_new"] == [2.5] and pc["version"] == [T0 + 1_500]
    assert pc["model_versions"] == ['{"a": "1", "b": "2"}']
    assert _prepare_columns("price_changes", pc)[0] == 1
    letter = DeadLetter(
        reason="schema",
        detail="d",
        source_topic="orders",
        source_partition=3,
        source_offset=42,
        payload_excerpt="{",
        received_at=T0,
    )
    dl = dead_letter_columns([encode(letter)])["dead_letters"]
    assert dl["source_offset"] == [42] and dl["version"] == [T0]
    assert _prepare_columns("dead_letters", dl)[0] == 1


def test_merge_batches_appends_column_by_column() -> None:
    a = aggregate_columns([_agg("sales_1m", _sales(1))])
    b = aggregate_columns([_agg("sales_1m", _sales(2)), _agg("clicks_1m", _clicks(0))])
    merged = merge_batches(a, b)
    assert merged["sales_1m"]["sku"] == ["S1", "S2"]
    assert merged["sales_1m"]["version"] == merged["sales_1m"]["window_end"]
    assert batch_rows(merged) == {"sales_1m": 2, "clicks_1m": 1}


def _row(**kw: Any) -> dict[str, Any]:
    return {**msgspec.to_builtins(_sales(1)), "version": 5, **kw}


def test_column_validation_names_the_problem() -> None:
    n, cols = _prepare_columns("sales_1m", rows_to_columns("sales_1m", [_row(), _row()]))
    assert n == 2
    ws = TABLES["sales_1m"].index("window_start")
    assert cols[ws] == [(T0 + MIN) // 1000] * 2  # DateTime: epoch ms in, seconds out
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"orders": -1}, ValueError, "orders: -1 is outside UInt32"),
        ({"orders": 2**32}, ValueError, "outside UInt32"),
        ({"units": 1.0}, TypeError, "units: expected int"),
        ({"units": True}, TypeError, "units: expected int"),
        ({"version": -1}, ValueError, "outside UInt64"),
        ({"sku": 1}, TypeError, "sku: expected str"),
        ({"price": "1"}, TypeError, "price: expected a number"),
        ({"price": False}, TypeError, "price: expected a number"),
        ({"window_start": "2024-01-01"}, TypeError, "window_start: expected epoch"),
        ({"window_end": -1000}, ValueError, "outside DateTime"),
        ({"window_end": 2**32 * 1000}, ValueError, "outside DateTime"),
    ]
    for change, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            _prepare_columns("sales_1m", rows_to_columns("sales_1m", [_row(), _row(**change)]))
    # ints are fine in a Float64 column, and come out as floats
    _, cols = _prepare_columns("sales_1m", rows_to_columns("sales_1m", [_row(price=3)]))
    assert cols[TABLES["sales_1m"].index("price")] == [3.0]
    assert math.isnan(
        _prepare_columns("sales_1m", rows_to_columns("sales_1m", [_row(price=math.nan)]))[1][6][0]
    )


def test_column_batches_must_be_whole_and_rectangular() -> None:
    cols = rows_to_columns("sales_1m", [_row(), _row()])
    with pytest.raises(ValueError, match="missing columns"):
        _prepare_columns("sales_1m", {k: v for k, v in cols.items() if k != "version"})
    with pytest.raises(ValueError, match="unknown columns"):
        _prepare_columns("sales_1m", {**cols, "bogus": [1, 2]})
    with pytest.raises(ValueError, match="different lengths"):
        _prepare_columns("sales_1m", {**cols, "orders": [1]})
    with pytest.raises(ValueError, match="unknown table"):
        _prepare_columns("nope", cols)
    with pytest.raises(ValueError, match="row 1: missing columns"):
        rows_to_columns("sales_1m", [_row(), {k: v for k, v in _row().items() if k != "sku"}])
    assert _prepare_columns("sales_1m", rows_to_columns("sales_1m", []))[0] == 0


def test_checked_columns_are_only_converted() -> None:
    cols = aggregate_columns([_agg("sales_1m", _sales(3))])["sales_1m"]
    n, values = _prepare_columns("sales_1m", cols, checked=True)
    assert n == 1
    assert values == _prepare_columns("sales_1m", cols)[1]
    # version is not part of the row type, so it is still checked
    with pytest.raises(ValueError, match="outside UInt64"):
        _prepare_columns("sales_1m", {**cols, "version": [-1]}, checked=True)
