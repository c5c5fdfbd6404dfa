"""A price_changes table created before the audit columns gains them in place, on ClickHouse
18.16 and chdb, and keeps its rows."""

from __future__ import annotations

import pytest

from repricer.infra.clickhouse import connect
from repricer.infra.clickhouse.tables import PRICE_CHANGES

pytestmark = pytest.mark.integration

OLD_DDL = """CREATE TABLE {db}.price_changes
(
    event_id String, sku String, old_price Float64, new_price Float64, currency String,
    decided_at DateTime, effective_at DateTime, window_start DateTime, reasons Array(String),
    forecast_old Float64, forecast_new Float64, elasticity Float64, model_versions String,
    guardrails Array(String), policy_version String, version UInt64
)
ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start, event_id)"""


def test_an_old_price_changes_table_gains_the_audit_columns(sink_url: str) -> None:
    ch = connect(sink_url)
    try:
        db = ch.database
        ch.init()  # today's schema, then price_changes as it was before the audit columns
        ch.query(f"DROP TABLE {db}.price_changes")
        ch.query(OLD_DDL.format(db=db))
        ch.query(
            f"INSERT INTO {db}.price_changes (event_id, sku, old_price, new_price, currency, "
            "decided_at, effective_at, window_start, reasons, forecast_old, forecast_new, "
            "elasticity, model_versions, guardrails, policy_version, version) SELECT "
            "'e1', 'A', 10, 11, 'EUR', toDateTime(1767225600), toDateTime(1767225600), "
            "toDateTime(1767225600), ['x'], 1, 1, -2, '{}', emptyArrayString(), 'v', 1767225600"
        )
        ch.init()
        ch.init()  # idempotent
        cols = ch.query(f"DESCRIBE TABLE {db}.price_changes")  # in table order
        assert tuple((str(c[0]), str(c[1])) for c in cols) == PRICE_CHANGES.columns
        rows = ch.query(f"SELECT sku, new_price, category, issued_by FROM {db}.price_changes")
        assert rows == [("A", 11.0, "", "")]
    finally:
        ch.close()
