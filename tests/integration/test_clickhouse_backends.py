"""Integration tests for infra.clickhouse: the same contract on a real server and on chdb.

The native backend runs against Debian's clickhouse-server 18.16 started by
``infra.local.clickhouse_server`` in a temp dir; the chdb backend uses an embedded session
in a temp dir. A missing server binary is a failure, not a skip.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from repricer.infra.clickhouse import (
    COLUMN_TYPES,
    REGISTRY,
    TABLES,
    ChdbBackend,
    ClickHouseBackend,
    ClickHouseUnavailable,
    NativeBackend,
    connect,
    mask_url,
    rows_to_columns,
)
from repricer.infra.local.clickhouse_server import (
    ClickHouseServer,
    start_clickhouse_server,
)

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_040_000  # 2023-11-14 22:14:00 UTC, a minute boundary
# the dead_letters columns DeadLetter v2 added (their values in a v1 row)
LETTER_V2: dict[str, Any] = {
    "payload": "",
    "payload_encoding": "utf8",
    "payload_size": 0,
    "payload_truncated": 0,
    "payload_kind": "record",
    "record_key": "",
    "key_encoding": "utf8",
    "source_timestamp": -1,
    "repricer_version": "",
    "resend_of": "",
}
MINUTE_MS = 60_000


# --------------------------------------------------------------------------- fixtures


def _url(kind: str, server: ClickHouseServer | None, chdb_dir: Path, database: str) -> str:
    if kind == "native":
        assert server is not None
        return server.url(database)
    return f"chdb://{chdb_dir}?database={database}"


@pytest.fixture(params=["native", "chdb"])
def backend(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[ClickHouseBackend]:
    server = request.getfixturevalue("clickhouse_server") if request.param == "native" else None
    db = f"t_{uuid.uuid4().hex[:12]}"
    b = connect(_url(request.param, server, chdb_dir, db))
    try:
        yield b
    finally:
        try:
            b.query(f"DROP DATABASE IF EXISTS {db}")
        finally:
            b.close()


# --------------------------------------------------------------------------- data


def make_rows() -> dict[str, list[dict[str, Any]]]:
    skus = ["sku-1", "sku-2", "o'brien"]
    sales, clicks, prices, forecasts, shadow = [], [], [], [], []
    for i, sku in enumerate(skus):
        for m in range(3):
            ws = T0_MS + m * MINUTE_MS
            sales.append(
                dict(
                    sku=sku,
                    window_start=ws,
                    window_end=ws + MINUTE_MS,
                    orders=i + m + 1,
                    units=10 * (i + 1) + m,
                    revenue=round(9.99 * (i + m + 1), 2),
                    price=9.99 + i,
                    late_events=m,
                    cost=4.5 + i,
                    version=1_000 + m,
                )
            )
            clicks.append(
                dict(
                    sku=sku,
                    window_start=ws,
                    window_end=ws + MINUTE_MS,
                    views=100 + i * 10 + m,
                    add_to_cart=5 + m,
                    remove_from_cart=i,
                    version=2_000 + m,
                )
            )
            forecasts.append(
                dict(
                    sku=sku,
                    window_start=ws,
                    model="river-arf" if m % 2 else "lstm-onnx",
                    predicted=1.5 * (i + m),
                    actual=float(i + m),
                    version=3_000 + m,
                )
            )
        prices.append(
            dict(
                event_id=f"pc-{i}",
                sku=sku,
                old_price=9.99 + i,
                new_price=10.49 + i,
                currency="EUR",
                decided_at=T0_MS + 61_500,
                effective_at=T0_MS + 62_000,
                window_start=T0_MS,
                reasons=["demand_up", 'it\'s "quoted"'],
                forecast_old=12.5,
                forecast_new=11.25,
                elasticity=-1.3,
                model_versions='{"lstm":"v3","river":"0.21"}',
                guardrails=[] if i else ["max_step"],
                policy_version="policy-7",
                category="toys" if i else "",
                issued_by="policy" if i else "o'neil",
                note="" if i else "promo\nweek",
                version=4_000 + i,
            )
        )
        shadow.append(
            dict(
                event_id=f"sd-{i}",
                sku=sku,
                mode="holdout" if i else "shadow",
                current_price=9.99 + i,
                would_price=10.49 + i,
                cost=5.0,
                currency="EUR",
                decided_at=T0_MS + 61_500,
                window_start=T0_MS,
                reasons=["demand_up"],
                guardrails=["max_step"] if i else [],
                forecast_old=12.5,
                forecast_new=11.25,
                expected_gain=-0.5 * i,
                model_versions='{"river":"0.21"}',
                policy_version="policy-7",
                version=6_000 + i,
            )
        )
    dead = [
        dict(
            source_topic="sales.events",
            source_partition=p,
            source_offset=2**40 + p,
            reason="schema",
            detail="missing field 'sku'\nline 2\\x",
            payload_excerpt='{"oops": true}',
            received_at=T0_MS + p * 1_000,
            version=5_000 + p,
            **{**LETTER_V2, "payload": '{"oops": true}', "payload_size": 14, "record_key": "k"},
        )
        for p in range(4)
    ]
    return {
        "sales_1m": sales,
        "clicks_1m": clicks,
        "price_changes": prices,
        "dead_letters": dead,
        "forecasts": forecasts,
        "shadow_decisions": shadow,
    }


def insert_all(b: ClickHouseBackend, rows: dict[str, list[dict[str, Any]]]) -> None:
    for table, table_rows in rows.items():
        assert b.insert(table, table_rows) == len(table_rows)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC)


# --------------------------------------------------------------------------- tests


def test_init_is_idempotent_and_matches_tables(backend: ClickHouseBackend) -> None:
    backend.init()
    backend.init()
    db = backend.database
    tables = {r[0] for r in backend.query(f"SHOW TABLES FROM {db}")}
    assert tables == set(TABLES)
    for table, spec in COLUMN_TYPES.items():
        described = [(r[0], r[1]) for r in backend.query(f"DESCRIBE TABLE {db}.{table}")]
        assert described == list(spec), table
        assert tuple(name for name, _ in described) == TABLES[table]
        engine = backend.query(
            "SELECT engine FROM system.tables WHERE database = %(db)s AND name = %(t)s",
            {"db": db, "t": table},
        )
        assert engine == [("ReplacingMergeTree",)]


def test_registry_matches_the_tables_the_ddl_creates(backend: ClickHouseBackend) -> None:
    """Every registry entry against the table schema.sql created: columns and types in order,
    ReplacingMergeTree on `version`, natural key and partition (18.16 and chdb alike)."""
    backend.init()
    db = backend.database
    assert {r[0] for r in backend.query(f"SHOW TABLES FROM {db}")} == set(REGISTRY)
    for name, table in REGISTRY.items():
        described = [(r[0], r[1]) for r in backend.query(f"DESCRIBE TABLE {table.at(db)}")]
        assert tuple(described) == table.columns, name
        (engine_full, sorting_key, partition_key), *_ = backend.query(
            "SELECT engine_full, sorting_key, partition_key FROM system.tables "
            "WHERE database = %(db)s AND name = %(t)s",
            {"db": db, "t": name},
        )
        assert engine_full.startswith("ReplacingMergeTree(version) "), (name, engine_full)
        assert sorting_key == ", ".join(table.key), name
        assert partition_key == f"toYYYYMM({table.partition_by})", name


# A table added by the recipe of infra/clickhouse/tables.py, step by step, on a copy of infra/.
_RECIPE_TABLE = """
class ReturnsWindow(Struct, frozen=True, kw_only=True, gc=False):
    sku: str
    window_start: int
    returns: int
    refunded: float


RETURNS_1M = Table(
    "returns_1m",
    (
        ("sku", "String"),
        ("window_start", "DateTime"),
        ("returns", "UInt32"),
        ("refunded", "Float64"),
        ("version", "UInt64"),
    ),
    key=("sku", "window_start"),
    partition_by="window_start",
    version_from="window_start",
    message=ReturnsWindow,
    aggregate=True,
)

"""
_RECIPE_DDL = """
CREATE TABLE IF NOT EXISTS repricer.returns_1m
(
    sku String,
    window_start DateTime,
    returns UInt32,
    refunded Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start)
;
"""
_RECIPE_CHECK = """
import json, sys
import msgspec
from repricer.infra.clickhouse import connect
from repricer.infra.clickhouse.tables import REGISTRY, RETURNS_1M, ReturnsWindow
from repricer.agents.sink import aggregate_columns
from repricer.streams import queries

ch = connect(sys.argv[1])
ch.init()
described = [(r[0], r[1]) for r in ch.query(f"DESCRIBE TABLE {RETURNS_1M.at(ch.database)}")]
row = ReturnsWindow(sku="a", window_start=1_700_000_040_000, returns=2, refunded=9.5)
msgs = [msgspec.json.encode({"t": RETURNS_1M.tag, "r": row})] * 2  # the window agent's message
msgs.append(msgspec.json.encode({"t": RETURNS_1M.tag, "r": {"sku": "b", "window_start": 0,
                                 "returns": -1, "refunded": 0.0}}))
rejected = []
batches = aggregate_columns(msgs, rejected)
written = sum(ch.insert_columns(t, cols, checked=True) for t, cols in batches.items())
print(json.dumps({
    "described": described,
    "columns": list(RETURNS_1M.columns),
    "written": written,
    "rejected": [i for i, _ in rejected],
    "counts": queries.row_counts(ch),
    "stored": [list(map(str, r)) for r in ch.query(
        f"SELECT sku, toUInt32(window_start), returns, refunded, version "
        f"FROM {RETURNS_1M.at(ch.database)} FINAL")],
}))
"""


def test_adding_a_table_by_the_recipe(tmp_path: Path) -> None:
    """One registry entry plus its DDL, and nothing else: the backends create it, the sink decodes
    its aggregates by tag and inserts them, the analyst row counts include it (on chdb)."""
    import shutil
    import subprocess
    import sys

    import repricer.infra as infra

    root = Path(infra.__file__).parent
    copy = tmp_path / "repricer" / "infra"  # found before the installed repricer.infra
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    tables = copy / "clickhouse" / "tables.py"
    src = tables.read_text()
    assert src.count("REGISTRY: Mapping[str, Table] = {") == 1
    assert src.count("        SHADOW_DECISIONS,\n    )\n}") == 1
    src = src.replace(
        "REGISTRY: Mapping[str, Table] = {", _RECIPE_TABLE + "REGISTRY: Mapping[str, Table] = {"
    )
    src = src.replace(
        "        SHADOW_DECISIONS,\n    )\n}",
        "        SHADOW_DECISIONS,\n        RETURNS_1M,\n    )\n}",
    )
    tables.write_text(src)
    schema = copy / "clickhouse" / "schema.sql"
    schema.write_text(schema.read_text() + _RECIPE_DDL)
    # the copy of infra/ comes first on the path (cwd); everything else is the project's own
    out = subprocess.run(
        [sys.executable, "-c", _RECIPE_CHECK, f"chdb://{tmp_path / 'chdb'}?database=recipe"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["described"] == got["columns"]
    assert got["written"] == 2 and got["rejected"] == [2]
    assert got["counts"]["returns_1m"] == 1  # the two equal rows collapsed on the natural key
    assert got["stored"] == [["a", "1700000040", "2", "9.5", "1700000040000"]]


def test_insert_every_table_twice_has_no_duplicates(backend: ClickHouseBackend) -> None:
    backend.init()
    db = backend.database
    rows = make_rows()
    insert_all(backend, rows)
    insert_all(backend, rows)  # at-least-once redelivery
    for table, table_rows in rows.items():
        [(n,)] = backend.query(f"SELECT count() FROM {db}.{table} FINAL")
        assert n == len(table_rows), table

    sales = rows["sales_1m"]
    [(orders, units, revenue, late)] = backend.query(
        f"SELECT sum(orders), sum(units), sum(revenue), sum(late_events) FROM {db}.sales_1m FINAL"
    )
    assert orders == sum(r["orders"] for r in sales)
    assert units == sum(r["units"] for r in sales)
    assert math.isclose(revenue, sum(r["revenue"] for r in sales), rel_tol=1e-12)
    assert late == sum(r["late_events"] for r in sales)
    assert all(isinstance(v, int) for v in (orders, units, late))

    [(views, atc, rfc)] = backend.query(
        f"SELECT sum(views), sum(add_to_cart), sum(remove_from_cart) FROM {db}.clicks_1m FINAL"
    )
    assert views == sum(r["views"] for r in rows["clicks_1m"])
    assert atc == sum(r["add_to_cart"] for r in rows["clicks_1m"])
    assert rfc == sum(r["remove_from_cart"] for r in rows["clicks_1m"])

    [(offsets,)] = backend.query(f"SELECT sum(source_offset) FROM {db}.dead_letters FINAL")
    assert offsets == sum(r["source_offset"] for r in rows["dead_letters"])

    got = backend.query(
        f"SELECT event_id, reasons, guardrails, model_versions FROM {db}.price_changes FINAL "
        "ORDER BY event_id"
    )
    assert got == [
        (r["event_id"], r["reasons"], r["guardrails"], r["model_versions"])
        for r in sorted(rows["price_changes"], key=lambda r: r["event_id"])
    ]
    detail = backend.query(f"SELECT DISTINCT detail FROM {db}.dead_letters")
    assert detail == [(rows["dead_letters"][0]["detail"],)]


def test_highest_version_wins(backend: ClickHouseBackend) -> None:
    backend.init()
    db = backend.database
    base = make_rows()["sales_1m"][0]
    newer = {**base, "units": 999, "version": base["version"] + 10}
    older = {**base, "units": 1, "version": base["version"] - 10}
    backend.insert("sales_1m", [base])
    backend.insert("sales_1m", [newer])
    backend.insert("sales_1m", [older])
    got = backend.query(f"SELECT units, version FROM {db}.sales_1m FINAL")
    assert got == [(999, newer["version"])]


def test_datetime_round_trip(backend: ClickHouseBackend) -> None:
    backend.init()
    db = backend.database
    ms = 1_704_067_199_999  # 2023-12-31 23:59:59.999 UTC: truncated to the second
    row = {
        "source_topic": "t",
        "source_partition": -1,
        "source_offset": -(2**40),
        "reason": "r",
        "detail": "d",
        "payload_excerpt": "",
        "received_at": ms,
        "version": 1,
        **LETTER_V2,
    }
    backend.insert("dead_letters", [row])
    [(received, partition_id, as_int, partition, offset)] = backend.query(
        f"SELECT received_at, toYYYYMM(received_at), toUInt32(received_at), "
        f"source_partition, source_offset FROM {db}.dead_letters"
    )
    assert received == datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert received.utcoffset() is not None and received.utcoffset().total_seconds() == 0
    assert partition_id == 202312
    assert as_int == ms // 1000
    assert (partition, offset) == (-1, -(2**40))

    # datetime parameters are compared in UTC regardless of the server timezone
    since = datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)
    [(n,)] = backend.query(
        f"SELECT count() FROM {db}.dead_letters WHERE received_at >= %(since)s", {"since": since}
    )
    assert n == 1


def test_string_param_with_quote_is_not_injectable(backend: ClickHouseBackend) -> None:
    backend.init()
    db = backend.database
    insert_all(backend, make_rows())
    sql = f"SELECT sku, sum(units) FROM {db}.sales_1m FINAL WHERE sku = %(sku)s GROUP BY sku"
    assert backend.query(sql, {"sku": "o'brien"}) == [("o'brien", 30 + 31 + 32)]
    for evil in ("x' OR '1'='1", "x' OR 1=1 --", "\\' OR 1=1 --", "o\\'brien"):
        assert backend.query(sql, {"sku": evil}) == [], evil
    # the injection attempts must not have touched anything
    [(n,)] = backend.query(f"SELECT count() FROM {db}.sales_1m FINAL")
    assert n == 9
    # array and int params
    got = backend.query(
        f"SELECT count() FROM {db}.sales_1m FINAL WHERE sku IN %(skus)s AND orders >= %(o)s",
        {"skus": ("sku-1", "o'brien"), "o": 3},
    )
    expected = sum(
        1 for r in make_rows()["sales_1m"] if r["sku"] in ("sku-1", "o'brien") and r["orders"] >= 3
    )
    assert got == [(expected,)]


def test_insert_rejects_bad_rows(backend: ClickHouseBackend) -> None:
    row = make_rows()["sales_1m"][0]
    with pytest.raises(ValueError):
        backend.insert("sales_1m", [{k: v for k, v in row.items() if k != "version"}])
    with pytest.raises(ValueError):
        backend.insert("sales_1m", [{**row, "bogus": 1}])
    with pytest.raises(ValueError):
        backend.insert("no_such_table", [row])
    with pytest.raises(TypeError):
        backend.insert("sales_1m", [{**row, "window_start": "2024-01-01"}])
    assert backend.insert("sales_1m", []) == 0


def test_insert_columns_same_rows_as_insert(backend: ClickHouseBackend) -> None:
    """The columnar path (what the sink uses) writes exactly what the row path writes."""
    backend.init()
    db = backend.database
    rows = make_rows()
    for table, table_rows in rows.items():
        cols = rows_to_columns(table, table_rows)
        checked = table in (
            "sales_1m",
            "clicks_1m",
            "forecasts",
            "shadow_decisions",
        )  # as the sink inserts them
        assert backend.insert_columns(table, cols, checked=checked) == len(table_rows)
        order = ", ".join(TABLES[table])
        got = backend.query(f"SELECT * FROM {db}.{table} ORDER BY {order}")
        backend.query(f"TRUNCATE TABLE {db}.{table}")
        backend.insert(table, table_rows)
        assert backend.query(f"SELECT * FROM {db}.{table} ORDER BY {order}") == got, table
        assert len(got) == len(table_rows)
    with pytest.raises(ValueError, match="outside UInt32"):
        backend.insert_columns(
            "sales_1m", {**rows_to_columns("sales_1m", rows["sales_1m"][:1]), "orders": [-1]}
        )
    nan = {**rows_to_columns("forecasts", rows["forecasts"][:1]), "predicted": [math.nan]}
    backend.insert_columns("forecasts", nan)
    [(p,)] = backend.query(f"SELECT predicted FROM {db}.forecasts WHERE isNaN(predicted)")
    assert math.isnan(p)
    assert backend.insert_columns("sales_1m", rows_to_columns("sales_1m", [])) == 0


def _types(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_types(v) for v in value])
    if isinstance(value, datetime):
        return ("datetime", value.tzinfo is not None and value.utcoffset())
    return type(value).__name__


def test_both_backends_return_identical_python_values(
    clickhouse_server: ClickHouseServer, chdb_dir: Path
) -> None:
    db = f"t_{uuid.uuid4().hex[:12]}"
    native = connect(clickhouse_server.url(db))
    embedded = connect(f"chdb://{chdb_dir}?database={db}")
    rows = make_rows()
    queries = [
        (f"SELECT * FROM {db}.{table} FINAL ORDER BY {', '.join(TABLES[table])}", None)
        for table in TABLES
    ] + [
        (
            f"SELECT sku, count(), sum(units), sum(revenue), min(window_start), "
            f"max(window_end), groupArray(orders) FROM {db}.sales_1m FINAL "
            "WHERE window_start >= %(since)s GROUP BY sku ORDER BY sku",
            {"since": utc(T0_MS + MINUTE_MS)},
        ),
        (
            "SELECT toDate(%(d)s), %(s)s, %(i)s, %(f)s, toUInt64(18446744073709551615), "
            "toInt64(-9223372036854775808), [1, 2], tuple(1, 'a'), CAST(NULL AS Nullable(UInt8))",
            {"d": date(2024, 2, 29), "s": "a'b\\c\n", "i": -7, "f": 0.1},
        ),
    ]
    try:
        for b in (native, embedded):
            b.init()
            insert_all(b, rows)
        for sql, params in queries:
            a = native.query(sql, params)
            c = embedded.query(sql, params)
            assert a, sql
            assert a == c, sql
            assert [_types(r) for r in a] == [_types(r) for r in c], sql
        first = native.query(f"SELECT window_start FROM {db}.sales_1m FINAL ORDER BY sku LIMIT 1")
        assert first == [(utc(T0_MS),)]
    finally:
        for b in (native, embedded):
            b.query(f"DROP DATABASE IF EXISTS {db}")
            b.close()


def test_repr_hides_password(chdb_dir: Path) -> None:
    secret = "s3cr3t-P@ss"
    url = "clickhouse://alice:s3cr3t-P%40ss@127.0.0.1:9000/repricer?connect_timeout=1"
    b = connect(url)  # lazy: nothing is contacted
    assert isinstance(b, NativeBackend)
    assert b.database == "repricer"
    for text in (repr(b), str(b), f"{b}", mask_url(url)):
        assert secret not in text and "s3cr3t" not in text
        assert "***" in text
    tls = connect("clickhouses://bob:hunter2@db.example:9440/x")
    assert isinstance(tls, NativeBackend) and tls.secure
    assert "hunter2" not in repr(tls)
    c = connect(f"chdb://{chdb_dir}")
    assert isinstance(c, ChdbBackend) and c.database == "repricer"
    assert isinstance(c, ClickHouseBackend) and isinstance(b, ClickHouseBackend)
    with pytest.raises(ValueError):
        connect("postgres://x@y/z")
    with pytest.raises(ValueError):
        connect("clickhouse://u@h:9000/bad-db-name")


def test_unreachable_server_raises_clickhouse_unavailable() -> None:
    from repricer.infra.local.clickhouse_server import _free_ports

    [port] = _free_ports(1)
    b = connect(f"clickhouse://u:topsecret@127.0.0.1:{port}/repricer?connect_timeout=1")
    with pytest.raises(ClickHouseUnavailable) as info:
        b.query("SELECT 1")
    assert "topsecret" not in str(info.value)
    with pytest.raises(ClickHouseUnavailable):
        b.init()
    b.close()


def test_server_restart_keeps_data_and_ports(tmp_path: Path) -> None:
    with start_clickhouse_server(tmp_path / "ch") as server:
        ports = (server.tcp_port, server.http_port)
        b = connect(server.url("restart"))
        b.init()
        b.insert("forecasts", make_rows()["forecasts"])
        server.stop()
        assert not server.running
        with pytest.raises(ClickHouseUnavailable):
            b.query("SELECT 1")
        server.start()  # same ports, same data
        assert (server.tcp_port, server.http_port) == ports
        [(n,)] = b.query("SELECT count() FROM restart.forecasts FINAL")  # driver reconnects
        assert n == 9
        b.close()
    assert not server.running


def test_demand_series_fills_quiet_windows_with_zeros(backend: ClickHouseBackend) -> None:
    """Only windows with events are stored; the documented query gives every window, quiet
    ones as zeros, on 18.16 and on current ClickHouse alike."""
    from repricer.streams.queries import demand_series

    backend.init()
    W = 60
    t0 = T0_MS // 1000 - (T0_MS // 1000) % W
    row = dict(window_end=0, price=2.0, late_events=0, cost=1.0, version=1)
    backend.insert(
        "sales_1m",
        [
            dict(row, sku="a", window_start=(t0 + 1 * W) * 1000, window_end=(t0 + 2 * W) * 1000,
                 orders=2, units=3, revenue=6.0),
            dict(row, sku="a", window_start=(t0 + 4 * W) * 1000, window_end=(t0 + 5 * W) * 1000,
                 orders=1, units=1, revenue=2.0),
            dict(row, sku="b", window_start=(t0 + 2 * W) * 1000, window_end=(t0 + 3 * W) * 1000,
                 orders=1, units=9, revenue=18.0),
        ],
    )  # fmt: skip
    backend.insert(
        "clicks_1m",
        [dict(sku="a", window_start=(t0 + 2 * W) * 1000, window_end=(t0 + 3 * W) * 1000,
              views=7, add_to_cart=0, remove_from_cart=0, version=1)],
    )  # fmt: skip
    got = [
        (r[0], int(r[1].timestamp()) if hasattr(r[1], "timestamp") else int(r[1]), *map(float, r[2:]))
        for r in demand_series(backend, "a", t0, t0 + 6 * W, W)
    ]  # fmt: skip
    assert got == [
        ("a", t0 + 0 * W, 0, 0, 0.0, 0),
        ("a", t0 + 1 * W, 2, 3, 6.0, 0),
        ("a", t0 + 2 * W, 0, 0, 0.0, 7),
        ("a", t0 + 3 * W, 0, 0, 0.0, 0),
        ("a", t0 + 4 * W, 1, 1, 2.0, 0),
        ("a", t0 + 5 * W, 0, 0, 0.0, 0),
    ]
