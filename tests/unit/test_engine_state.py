"""The engine's durable records: old changelog records decode, new ones keep the wire format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faust.serializers import codecs

from repricer.streams.engine.state import (
    TABLE_RECORDS,
    Accounting,
    Counts,
    OpenWindows,
    PartitionState,
    SkuState,
    WindowCounts,
    decode,
    encode,
    load,
)

# records written by the engine before its state was typed (sku-state, sku-open and
# partition-state, as Faust's JSON codec wrote them to the changelog topics)
RECORDS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "data" / "engine-records-v1.json").read_text()
)


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: f"{r['table']}:{r['key']}")
def test_a_record_written_before_the_types_decodes_and_writes_back_the_same(
    rec: dict[str, Any],
) -> None:
    typ = TABLE_RECORDS[rec["table"]]
    old = json.loads(rec["value"])
    record = decode(typ, rec["value"])
    assert load(typ, old) == record  # from the bytes, or from a recovered table's JSON value
    again = json.loads(codecs.dumps("json", record))
    # written again, every key it had holds the same value, but for an open record's empty
    # order ids / zero counts, which it leaves out (keys added since hold defaults)
    left_out = {k: old[k] for k in set(old) - set(again)}
    assert {k: again[k] for k in old if k in again} == {k: old[k] for k in again if k in old}
    assert all(v in ({}, [0, 0]) for v in left_out.values()), left_out
    if typ is not OpenWindows:
        assert not left_out
    assert again == record.__json__() and decode(typ, encode(record)) == record


def test_old_records_read_as_their_fields() -> None:
    by = {(r["table"], r["key"]): r["value"] for r in RECORDS}
    a = decode(SkuState, by[("sku-state", "A")])
    assert a.catalog is not None and a.catalog.currency == "EUR" and a.catalog.stock is None
    assert a.pending is not None and a.pending.window_start == a.next_window
    assert a.pending.predictions["river"] > 0 and len(a.history) == a.windows_seen == 6
    assert a.model_state["nd"] == 6 and a.source_offsets == {"catalog/0": 0, "control/0": 2}
    c = decode(SkuState, by[("sku-state", "C")])  # no catalog, no labels, no "at" yet
    assert c.catalog is None and c.labels == 0 and c.source_offsets == {}
    assert c.emitted == Counts(36, 12) and c.sold == 12
    op = decode(OpenWindows, by[("sku-open", "A")])
    ((start, w),) = op.windows.items()
    assert start == a.next_window and w == WindowCounts(1, 1, 10.0, 0, 0, 0)
    assert op.order_ids[start] and op.duplicates == Counts(1, 1) == op.late_counts
    b = decode(OpenWindows, by[("sku-open", "C")])  # written before it had ids / lt / dp
    assert b.order_ids == {} and b.late_counts == Counts() and b.accepted == Counts(36, 12)
    pm = decode(PartitionState, by[("partition-state", "0")])
    assert pm.frozen_all and pm.boundary == a.next_window and pm.model
    assert pm.accounting is not None and pm.accounting.unaccounted == [0, 0]
    assert pm.accounting.accepted == [111, 75] and pm.skipped == 0


def test_a_table_value_is_read_as_is_or_from_its_json_form() -> None:
    st = SkuState(partition=3, price=9.5)
    assert load(SkuState, st) is st
    assert load(SkuState, json.loads(codecs.dumps("json", st))) == st


def test_window_counts_and_counts_are_arrays_on_the_wire() -> None:
    op = OpenWindows(windows={60_000: WindowCounts(2, 3, 31.5, 4, 1, 0)})
    op.accepted.add(7, 3)
    wire = json.loads(codecs.dumps("json", op))
    assert wire["w"] == {"60000": [2, 3, 31.5, 4, 1, 0]} and wire["a"] == [7, 3]
    # written per event: no order ids, late or duplicate counts until there are some
    assert set(wire) == {"w", "late", "src", "off", "a"}
    op.duplicates.add(1, 2)
    op.order_ids[60_000] = [12345]
    wire = json.loads(codecs.dumps("json", op))
    assert wire["dp"] == [1, 2] and wire["ids"] == {"60000": [12345]} and "lt" not in wire
    assert load(OpenWindows, wire) == op


def test_accounting_balances_when_built_and_when_decoded() -> None:
    acct = Accounting(accepted=[10, 25], emitted=[7, 20], open=[0, 0], late=[1, 0])
    assert acct.unaccounted == [2, 5]
    acct.open[0] += 2
    acct.open[1] += 5
    assert acct.balance() == [0, 0]
    wire = acct.to_dict()
    wire["unaccounted"] = [9, 9]  # stale in the record: recomputed from the counts
    assert Accounting.from_dict(wire).unaccounted == [0, 0]
