"""The table registry against its DDL (schema.sql, read as text), its entry checks, the paths
that work for any registered table, and infra standing alone (no streams/agents/models)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import pytest

from repricer.agents.sink import aggregate_columns, batch_rows
from repricer.infra.clickhouse import load_schema
from repricer.infra.clickhouse.backends import _prepare_columns
from repricer.infra.clickhouse.tables import (
    AGGREGATES,
    COLUMN_TYPES,
    FORECASTS,
    REGISTRY,
    SALES_1M,
    TABLES,
    Table,
    row_type,
)
from repricer.schemas import ClicksWindow, SalesWindow
from repricer.streams import queries

T0 = 1_767_225_600_000

_CREATE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (?P<db>\w+)\.(?P<name>\w+)\s*\((?P<body>.*)\)\s*"
    r"ENGINE = (?P<engine>\w+)\((?P<version>\w*)\)\s*"
    r"PARTITION BY toYYYYMM\((?P<partition>\w+)\)\s*"
    r"ORDER BY \((?P<key>[\w, ]+)\)\s*$",
    re.DOTALL,
)


def parse_ddl(statements: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The CREATE TABLE statements of schema.sql by table: columns, engine, partition, key."""
    out: dict[str, dict[str, Any]] = {}
    for stmt in statements:
        if not stmt.startswith("CREATE TABLE"):
            continue
        m = _CREATE.match(stmt)
        assert m, f"schema.sql statement not in the registry's shape:\n{stmt}"
        columns = []
        for line in m["body"].splitlines():
            line = line.strip().rstrip(",")
            if line:
                name, ch_type = line.split(None, 1)
                columns.append((name, ch_type))
        out[m["name"]] = {
            "columns": tuple(columns),
            "engine": f"{m['engine']}({m['version']})",
            "partition_by": m["partition"],
            "key": tuple(k.strip() for k in m["key"].split(",")),
        }
    return out


def ddl_mismatches(statements: Sequence[str], registry: Mapping[str, Table]) -> list[str]:
    ddl = parse_ddl(statements)
    problems = [f"{t}: in schema.sql, not in the registry" for t in ddl.keys() - registry.keys()]
    for name, table in registry.items():
        have = ddl.get(name)
        if have is None:
            problems.append(f"{name}: no CREATE TABLE in schema.sql")
            continue
        want = {
            "columns": table.columns,
            "engine": "ReplacingMergeTree(version)",
            "partition_by": table.partition_by,
            "key": table.key,
        }
        problems += [f"{name}: {k} {have[k]} != {v}" for k, v in want.items() if have[k] != v]
    return problems


def test_schema_sql_has_every_registry_table_as_registered() -> None:
    statements = load_schema("repricer")
    assert set(parse_ddl(statements)) == set(REGISTRY)
    assert ddl_mismatches(statements, REGISTRY) == []
    assert list(parse_ddl(statements)) == list(REGISTRY)  # the same order


def test_a_ddl_that_drifted_from_the_registry_is_caught() -> None:
    statements = load_schema("repricer")
    retyped = [s.replace("orders UInt32", "orders UInt64") for s in statements]
    assert ddl_mismatches(retyped, REGISTRY) == [
        f"sales_1m: columns {tuple((c, 'UInt64' if c == 'orders' else t) for c, t in SALES_1M.columns)}"
        f" != {SALES_1M.columns}"
    ]
    rekeyed = [
        s.replace("ORDER BY (sku, window_start, model)", "ORDER BY (sku, model)")
        for s in statements
    ]
    assert ddl_mismatches(rekeyed, REGISTRY) == [
        "forecasts: key ('sku', 'model') != ('sku', 'window_start', 'model')"
    ]
    dropped = [s for s in statements if ".dead_letters" not in s]
    assert ddl_mismatches(dropped, REGISTRY) == ["dead_letters: no CREATE TABLE in schema.sql"]


def test_derived_views_of_the_registry() -> None:
    assert tuple(TABLES) == tuple(COLUMN_TYPES) == tuple(REGISTRY) == queries.TABLE_NAMES
    for name, table in REGISTRY.items():
        assert TABLES[name] == table.column_names and COLUMN_TYPES[name] == table.columns
        assert row_type(name) is table.row_type
        assert table.row_type.__struct_fields__ == table.column_names[:-1]
    assert [t.name for t in AGGREGATES] == ["sales_1m", "clicks_1m", "forecasts"]
    assert [t.tag for t in AGGREGATES] == ["sales_1m", "clicks_1m", "forecasts"]  # the wire tags
    with pytest.raises(ValueError, match="not sent as aggregates"):
        _ = REGISTRY["price_changes"].tag


def test_sql_names_are_checked() -> None:
    assert FORECASTS.at("shop_1") == "shop_1.forecasts"
    with pytest.raises(ValueError, match="invalid database name"):
        FORECASTS.at("x; DROP TABLE y")
    assert SALES_1M.pick("sku", "units") == ("sku", "units")
    with pytest.raises(ValueError, match=r"sales_1m has no columns \['views'\]"):
        SALES_1M.pick("sku", "views")


def _entry(**kw: Any) -> Table:
    base: dict[str, Any] = dict(
        name="sales_1m",
        columns=SALES_1M.columns,
        key=SALES_1M.key,
        partition_by="window_start",
        version_from="window_end",
        message=SalesWindow,
        aggregate=True,
    )
    return Table(**{**base, **kw})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "sales-1m"}, "invalid table name"),
        ({"columns": (("sku", "LowCardinality(String)"), ("version", "UInt64"))}, "unsupported"),
        ({"columns": SALES_1M.columns[:-1]}, "last column must be `version UInt64`"),
        ({"columns": (*SALES_1M.columns[:2], SALES_1M.columns[1], SALES_1M.columns[-1])}, "dup"),
        ({"key": ("sku", "window")}, "'window' is not a column"),
        ({"partition_by": "sku"}, "partition_by must be a DateTime column"),
        ({"version_from": "late"}, "'late' is not a column"),
        ({"message": ClicksWindow}, "ClicksWindow's fields must be the columns but version"),
    ],
)
def test_a_bad_entry_fails_when_it_is_built(change: dict[str, Any], message: str) -> None:
    _entry()  # the base entry is fine
    with pytest.raises(ValueError, match=message):
        _entry(**change)


_SAMPLE = {"String": "a'b", "DateTime": T0, "Float64": 1.5, "UInt32": 7, "UInt64": 2**40}


@pytest.mark.parametrize("table", AGGREGATES, ids=lambda t: t.name)
def test_every_aggregate_table_goes_through_the_sink_by_its_tag(table: Table) -> None:
    """Built from the registry alone: a table added by the recipe is covered as it is."""
    row = table.message(**{c: _SAMPLE[t] for c, t in table.columns if c != "version"})
    msg = msgspec.json.encode({"t": table.tag, "r": row})  # what the window agent sends
    out = aggregate_columns([msg, msg])
    assert batch_rows(out) == {table.name: 2}
    cols = out[table.name]
    assert cols["version"] == cols[table.version_from]
    assert _prepare_columns(table.name, cols, checked=True) == _prepare_columns(table.name, cols)
    # a value its column cannot hold is refused while decoding, by the table's row type
    first_int = next(c for c, t in table.columns if t == "UInt32" or t == "DateTime")
    bad = msgspec.json.encode({"t": table.tag, "r": {**msgspec.to_builtins(row), first_int: -1}})
    rejected: list[tuple[int, str]] = []
    assert aggregate_columns([bad], rejected) == {}
    assert [i for i, _ in rejected] == [0] and first_int in rejected[0][1]


def test_infra_imports_no_streams_agents_or_models() -> None:
    code = (
        "import sys, infra.kafka_client, infra.kafka_admin, infra.clickhouse, "
        "infra.local.tansu, infra.local.clickhouse_server\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'streams', 'agents', 'models'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
