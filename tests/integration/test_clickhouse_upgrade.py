"""A database created by an older repricer (v1 ``dead_letters``) upgrades in place on ``init``,
on ClickHouse 18.16 and on chdb: the new columns are added in registry order, the old rows are
kept (the new columns read their defaults), new rows are written, and queries run on both."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from repricer.infra.clickhouse import ClickHouseBackend, connect
from repricer.infra.clickhouse.tables import DEAD_LETTERS

pytestmark = pytest.mark.integration

V1_DDL = """CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    reason String,
    detail String,
    payload_excerpt String,
    received_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_topic, source_partition, source_offset)"""


@pytest.fixture(params=["clickhouse-18.16", "chdb"])
def old_db(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[ClickHouseBackend]:
    db = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "chdb":
        url = f"chdb://{chdb_dir}?database={db}"
    else:
        url = request.getfixturevalue("clickhouse_server").url(db)
    ch = connect(url)
    ch.query(f"CREATE DATABASE IF NOT EXISTS {db}")
    ch.query(V1_DDL.format(db=db))
    ch.query(
        f"INSERT INTO {db}.dead_letters SELECT "
        "'orders', 0, 7, 'wrong_type', 'old', '{', toDateTime(1767225600), 1767225600"
    )
    try:
        yield ch
    finally:
        ch.query(f"DROP DATABASE IF EXISTS {db}")
        ch.close()


def test_init_adds_the_new_dead_letter_columns_and_keeps_old_rows(
    old_db: ClickHouseBackend,
) -> None:
    db = old_db.database
    old_db.init()
    old_db.init()  # idempotent: nothing left to add the second time
    cols = old_db.query(
        "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = 'dead_letters'",
        {"db": db},
    )
    assert [tuple(c) for c in cols] == list(DEAD_LETTERS.columns)
    old_db.insert(
        "dead_letters",
        [
            {
                "source_topic": "orders",
                "source_partition": 0,
                "source_offset": 8,
                "reason": "wrong_type",
                "detail": "new",
                "payload_excerpt": "{",
                "received_at": 1_767_225_660_000,
                "payload": '{"qty":"two"}',
                "payload_encoding": "utf8",
                "payload_size": 13,
                "payload_truncated": 0,
                "payload_kind": "record",
                "record_key": "A",
                "key_encoding": "utf8",
                "source_timestamp": 1_767_225_659_000,
                "repricer_version": "0.1.0",
                "resend_of": "",
                "version": 1_767_225_660,
            }
        ],
    )
    rows = old_db.query(
        f"SELECT source_offset, detail, payload, payload_size, record_key FROM {db}.dead_letters "
        "FINAL ORDER BY source_offset"
    )
    assert rows == [(7, "old", "", 0, ""), (8, "new", '{"qty":"two"}', 13, "A")]


V1_SALES_DDL = """CREATE TABLE IF NOT EXISTS {db}.sales_1m
(
    sku String,
    window_start DateTime,
    window_end DateTime,
    orders UInt32,
    units UInt64,
    revenue Float64,
    price Float64,
    late_events UInt32,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start)"""


def test_init_adds_the_sales_cost_column_and_old_rows_read_as_unknown_cost(
    old_db: ClickHouseBackend,
) -> None:
    """``sales_1m`` from before ``cost``: ``init`` adds it after ``late_events``; the old rows
    read 0, which the uplift counts as no cost (it falls back to ``shadow_decisions``)."""
    from datetime import UTC, datetime

    from repricer.infra.clickhouse.tables import SALES_1M
    from repricer.streams.uplift import from_clickhouse

    db = old_db.database
    old_db.query(V1_SALES_DDL.format(db=db))
    old_db.query(
        f"INSERT INTO {db}.sales_1m SELECT 'OLD', toDateTime(1767225600), "
        "toDateTime(1767225660), 1, 2, 5.0, 2.5, 0, 1767225660"
    )
    old_db.init()
    cols = old_db.query(
        "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = 'sales_1m'",
        {"db": db},
    )
    assert [tuple(c) for c in cols] == list(SALES_1M.columns)
    row = {"window_end": 1_767_225_720_000, "orders": 1, "units": 3, "revenue": 7.5}
    row |= {"price": 2.5, "late_events": 0, "version": 1_767_225_720}
    old_db.insert(
        "sales_1m",
        [row | {"sku": "NEW", "window_start": 1_767_225_660_000, "cost": 1.25}],
    )
    at = lambda s: datetime.fromtimestamp(s, UTC)  # noqa: E731
    est = from_clickhouse(
        old_db, since=at(1_767_225_660), until=at(1_767_225_780), start=at(1_767_225_600),
        holds=lambda sku: False,
    )  # fmt: skip
    assert est["treated_skus"] == 2 and est["skus_with_cost"] == 1  # NEW's; OLD's reads 0
