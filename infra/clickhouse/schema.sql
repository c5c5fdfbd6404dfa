-- ClickHouse schema for the repricer sink.
-- Must run unchanged on ClickHouse 18.16 and on current ClickHouse (chdb):
-- no DateTime64 / LowCardinality / TTL / Map / JSON / query parameters.
-- All DateTime columns hold UTC seconds. Every table is a ReplacingMergeTree keyed
-- on its natural key, so at-least-once redelivery collapses on merge / FINAL.
-- The loader (infra/clickhouse/backends.py) replaces the `repricer.` prefix with the
-- target database name and splits statements on lines consisting of a single `;`.
-- Every table here has an entry in the table registry (infra/clickhouse/tables.py: the same
-- columns and types, key, partition and version column); tests compare the two on 18.16 and
-- chdb. Its docstring is the recipe for adding a table.
-- A column added to an existing table goes into its CREATE TABLE here (before `version`) and
-- into the registry; `init` then adds it to a database created before (infra/clickhouse/
-- migrate.py: ALTER TABLE ... ADD COLUMN, additive only).

CREATE DATABASE IF NOT EXISTS repricer
;

CREATE TABLE IF NOT EXISTS repricer.sales_1m
(
    sku String,
    window_start DateTime,
    window_end DateTime,
    orders UInt32,
    units UInt64,
    revenue Float64,
    price Float64,
    late_events UInt32,
    cost Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start)
;

CREATE TABLE IF NOT EXISTS repricer.clicks_1m
(
    sku String,
    window_start DateTime,
    window_end DateTime,
    views UInt32,
    add_to_cart UInt32,
    remove_from_cart UInt32,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start)
;

CREATE TABLE IF NOT EXISTS repricer.price_changes
(
    event_id String,
    sku String,
    old_price Float64,
    new_price Float64,
    currency String,
    decided_at DateTime,
    effective_at DateTime,
    window_start DateTime,
    reasons Array(String),
    forecast_old Float64,
    forecast_new Float64,
    elasticity Float64,
    model_versions String,
    guardrails Array(String),
    policy_version String,
    category String,
    issued_by String,
    note String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start, event_id)
;

CREATE TABLE IF NOT EXISTS repricer.dead_letters
(
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    reason String,
    detail String,
    payload_excerpt String,
    received_at DateTime,
    payload String,
    payload_encoding String,
    payload_size Int64,
    payload_truncated UInt32,
    payload_kind String,
    record_key String,
    key_encoding String,
    source_timestamp Int64,
    repricer_version String,
    resend_of String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_topic, source_partition, source_offset)
;

CREATE TABLE IF NOT EXISTS repricer.forecasts
(
    sku String,
    window_start DateTime,
    model String,
    predicted Float64,
    actual Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start, model)
;

CREATE TABLE IF NOT EXISTS repricer.shadow_decisions
(
    event_id String,
    sku String,
    mode String,
    current_price Float64,
    would_price Float64,
    cost Float64,
    currency String,
    decided_at DateTime,
    window_start DateTime,
    reasons Array(String),
    guardrails Array(String),
    forecast_old Float64,
    forecast_new Float64,
    expected_gain Float64,
    model_versions String,
    policy_version String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (sku, window_start, event_id)
;
