"""`repricer replay` reading: CSV and JSON lines, column mapping, timestamp units, bad rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from repricer.schemas import Rejection
from repricer.schemas.decode import watermark_marker
from repricer.streams.settings import Settings
from repricer.streams.tools.replay.read import (
    ReadOptions,
    convert_ts,
    file_format,
    load,
    parse_mapping,
    parse_time,
    read_file,
)
from repricer.streams.tools.replay.send import end_of_input_at

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S = Settings()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _bodies(rows: list) -> list[dict]:
    return [json.loads(r.payload) for r in rows]


def test_orders_csv_in_event_time_order_with_bad_rows_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "orders.csv",
        "order_id,ts,sku,qty,unit_price,currency,email\n"
        "o3,2026-01-01T00:02:00+00:00,A,1,9.5,EUR,x@example.com\n"
        "o1,1767225600000,B,2,3.0,EUR,y@example.com\n"
        "o2,2026-01-01T01:01:00+01:00,A,1,9.50,EUR,\n"
        "bad1,2026-01-01T00:03:00,A,1,9.5,EUR,\n"
        "bad2,1767225600000,A,-1,9.5,EUR,\n"
        "bad3,1767225600000,A,two,9.5,EUR,\n",
    )
    h = load([("orders", path)], ReadOptions(), S)
    assert [b["order_id"] for b in _bodies(h.events)] == ["o1", "o2", "o3"]
    assert [r.key for r in h.events] == [b"o1", b"o2", b"o3"]
    assert _bodies(h.events)[0] == {
        "order_id": "o1",
        "ts": T0,
        "sku": "B",
        "qty": 2,
        "unit_price": 3.0,
        "currency": "EUR",
    }, "ts in epoch ms, numbers typed, unknown columns (e-mail) dropped"
    assert [(p.line, p.reason) for p in h.problems] == [
        (5, "naive_timestamp"),
        (6, "out_of_range"),
        (7, "wrong_type"),
    ]
    assert h.skipped_by_reason == {"naive_timestamp": 1, "out_of_range": 1, "wrong_type": 1}
    assert str(h.problems[0]).startswith(f"{path}:5: orders: naive_timestamp:")
    assert h.read == {"orders": 6}


def test_clicks_jsonl_with_mapping_and_seconds(tmp_path: Path) -> None:
    lines = [
        {"id": "c2", "time": 1767225660, "session": "s1", "product_id": "A", "type": "view"},
        {
            "id": "c1",
            "time": 1767225600.5,
            "session": "s1",
            "product_id": "A",
            "type": "add_to_cart",
            "price_seen": "9.5",
        },
        {"id": "c3", "time": 1767225700, "session": "s1", "product_id": "A", "type": "purchase"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n\nnot json\n[1, 2]\n"
    path = _write(tmp_path, "clicks.ndjson", text)
    opts = ReadOptions(
        mapping=parse_mapping(
            ["clicks.event_id=id", "ts=time", "session_id=session", "sku=product_id"]
        ),
        ts_unit="s",
    )
    rows, problems, n = read_file("clicks", path, opts, S)
    assert n == 5
    assert [(b["event_id"], b["ts"]) for b in _bodies(rows)] == [
        ("c2", T0 + 60_000),
        ("c1", T0 + 500),
    ], "file order here; load() sorts"
    assert _bodies(rows)[1]["price_seen"] == 9.5
    assert [(p.line, p.reason) for p in problems] == [
        (3, "invalid_value"),  # unknown click type
        (5, "malformed_json"),
        (6, "wrong_type"),  # a line that is not an object
    ]


def test_seconds_read_as_milliseconds_are_rejected_not_misdated(tmp_path: Path) -> None:
    path = _write(tmp_path, "o.csv", "order_id,ts,sku,qty,unit_price\no1,1767225600,A,1,2\n")
    rows, problems, _ = read_file("orders", path, ReadOptions(ts_unit="ms"), S)
    assert not rows and problems[0].reason == "out_of_range"  # 1970: the unit was wrong
    rows, problems, _ = read_file("orders", path, ReadOptions(ts_unit="s"), S)
    assert not problems and rows[0].ts == T0


def test_catalog_csv_semicolons_gzip_and_file_order(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(
            "product;cost;base;min;max;stock\n"
            "B;50;80;55;150;\n"
            "A;10;13;11;40;7\n"
            "Z;1;2;5;3;\n"  # min > max
        )
    opts = ReadOptions(
        mapping=parse_mapping(
            ["sku=product", "cost=cost", "base_price=base", "min_price=min", "max_price=max"]
        ),
        delimiter=";",
    )
    h = load([("catalog", path)], opts, S)
    assert [(r.key, r.ts) for r in h.catalog] == [(b"B", 0), (b"A", 0)]
    assert _bodies(h.catalog)[1] == {
        "sku": "A",
        "cost": 10.0,
        "base_price": 13.0,
        "min_price": 11.0,
        "max_price": 40.0,
        "stock": 7,
    }
    assert [(p.line, p.reason) for p in h.problems] == [(4, "invalid_value")]


def test_orders_and_clicks_merge_by_event_time(tmp_path: Path) -> None:
    o = _write(
        tmp_path,
        "o.jsonl",
        "\n".join(
            json.dumps(
                {"order_id": f"o{i}", "ts": T0 + i * 1000, "sku": "A", "qty": 1, "unit_price": 2.0}
            )
            for i in (0, 2, 4)
        ),
    )
    c = _write(
        tmp_path,
        "c.csv",
        "event_id,ts,session_id,sku,type\n"
        + "".join(f"c{i},{T0 + i * 1000},s,A,view\n" for i in (3, 1, 5)),
    )
    h = load([("orders", o), ("clicks", c)], ReadOptions(), S)
    assert [(r.kind, r.ts - T0) for r in h.events] == [
        ("orders", 0),
        ("clicks", 1000),
        ("orders", 2000),
        ("clicks", 3000),
        ("orders", 4000),
        ("clicks", 5000),
    ]


def test_naive_timestamps_need_a_zone() -> None:
    rej = convert_ts("2026-01-01 01:00:00", unit="ms", tz=None)
    assert isinstance(rej, Rejection) and rej.reason == "naive_timestamp"
    assert convert_ts("2026-01-01 01:00:00", unit="ms", tz=ZoneInfo("Europe/Berlin")) == T0
    assert convert_ts("2026-01-01 01:00:00 +0100", unit="ms", tz=None) == T0  # Shopify style
    assert convert_ts("2026-01-01T00:00:00Z", unit="s", tz=None) == T0  # unit: numbers only
    assert convert_ts("1767225600000000", unit="us", tz=None) == T0
    assert convert_ts("soon", unit="ms", tz=None) == "soon"  # left for the decoder to name


def test_future_rows_rejected_like_the_worker_does(tmp_path: Path) -> None:
    path = _write(tmp_path, "o.csv", "order_id,ts,sku,qty,unit_price\no1,4000000000000,A,1,2\n")
    rows, problems, _ = read_file("orders", path, ReadOptions(), S, now_ms=T0)
    assert not rows and problems[0].reason == "future_timestamp"


def test_mapping_and_format_errors_are_explained() -> None:
    assert parse_mapping(["ts=created"])["orders"]["ts"] == "created"
    assert parse_mapping(["ts=created"])["clicks"]["ts"] == "created"
    assert "ts" not in parse_mapping(["ts=created"])["catalog"]
    assert parse_mapping(["orders.sku=pid"]) == {
        "catalog": {},
        "orders": {"sku": "pid"},
        "clicks": {},
    }
    with pytest.raises(ValueError, match="no field 'price'"):
        parse_mapping(["price=p"])
    with pytest.raises(ValueError, match="unknown kind 'sales'"):
        parse_mapping(["sales.sku=p"])
    with pytest.raises(ValueError, match="FIELD=COLUMN"):
        parse_mapping(["sku"])
    assert file_format(Path("a.NDJSON"), None) == "jsonl"
    assert file_format(Path("a.csv.gz"), None) == "csv"
    assert file_format(Path("a.txt"), "csv") == "csv"
    with pytest.raises(ValueError, match="--format"):
        file_format(Path("a.txt"), None)


def test_end_of_input_closes_the_last_window() -> None:
    s = Settings(window_s=60, lateness_s=10)
    last = T0 + 59_999  # the last millisecond of window [T0, T0 + 60 s)
    at = end_of_input_at(last, s)
    assert at == last + 60_000 + 10_000 + 1
    # the window engine closes windows starting before window_of(watermark - lateness)
    boundary = (at - s.lateness_ms) - (at - s.lateness_ms) % s.window_ms
    assert boundary > T0
    assert parse_time("2026-01-01T00:00:00Z") == T0 == parse_time(str(T0))
    with pytest.raises(ValueError, match="offset"):
        parse_time("2026-01-01T00:00:00")


def test_watermark_marker_header() -> None:
    assert watermark_marker(()) is None
    assert watermark_marker([("other", b"1")]) is None
    assert watermark_marker([("repricer-watermark", str(T0).encode())]) == T0
    for bad in (b"soon", b"1.5e12", b"-1", b""):
        rej = watermark_marker([("repricer-watermark", bad)])
        assert isinstance(rej, Rejection) and rej.reason == "bad_watermark", bad
    rej = watermark_marker([("repricer-watermark", b"1767225600")])  # seconds: 1970 in ms
    assert isinstance(rej, Rejection) and rej.reason == "bad_watermark"
    rej = watermark_marker([("repricer-watermark", str(T0).encode())], not_after_ms=T0 - 1)
    assert isinstance(rej, Rejection) and rej.reason == "future_timestamp"
