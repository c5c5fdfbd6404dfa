"""An existing database gets the columns a newer registry has (additive, in order)."""

from __future__ import annotations

from typing import Any

from repricer.infra.clickhouse.migrate import add_column_statements, upgrade
from repricer.infra.clickhouse.tables import DEAD_LETTERS, REGISTRY

V1_LETTER_COLUMNS = [
    "source_topic",
    "source_partition",
    "source_offset",
    "reason",
    "detail",
    "payload_excerpt",
    "received_at",
    "version",
]


def test_v1_dead_letters_table_gets_the_v2_columns_after_received_at() -> None:
    stmts = add_column_statements("shop", DEAD_LETTERS, V1_LETTER_COLUMNS)
    assert stmts[0] == "ALTER TABLE shop.dead_letters ADD COLUMN payload String AFTER received_at"
    assert stmts[-1] == (
        "ALTER TABLE shop.dead_letters ADD COLUMN resend_of String AFTER repricer_version"
    )
    added = [s.split(" ADD COLUMN ")[1].split()[0] for s in stmts]
    assert added == [c for c in DEAD_LETTERS.column_names if c not in V1_LETTER_COLUMNS]


def test_upgrade_runs_only_what_is_missing() -> None:
    ran: list[str] = []

    def query(sql: str, params: Any) -> list[tuple[Any, ...]]:
        table = REGISTRY[params["t"]]
        cols = V1_LETTER_COLUMNS if table is DEAD_LETTERS else table.column_names
        return [(c,) for c in cols]

    assert upgrade("shop", query, ran.append) == ran
    assert len(ran) == len(DEAD_LETTERS.columns) - len(V1_LETTER_COLUMNS)
    assert all(s.startswith("ALTER TABLE shop.dead_letters ") for s in ran)
