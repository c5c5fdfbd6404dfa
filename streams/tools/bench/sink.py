"""``repricer bench sink``: rows/s of the project's ClickHouse sink path ÷ one bulk columnar
clickhouse-driver insert of the same rows into the same server."""

from __future__ import annotations

import statistics
import time
from typing import Any

from repricer.streams.tools.bench.common import (
    MIN_MS,
    T0,
    Progress,
    machine,
    median_and_range,
    say,
    tmpdir,
)


def _sales_rows(n: int) -> list[Any]:
    """``n`` SalesWindow rows: n/10 SKUs over 10 windows."""
    from repricer.schemas import SalesWindow

    rows = []
    skus = max(1, n // 10)
    for i in range(n):
        ws = T0 + (i // skus) * MIN_MS
        rows.append(
            SalesWindow(
                sku=f"SKU-{i % skus:06d}",
                window_start=ws,
                window_end=ws + MIN_MS,
                orders=i % 7,
                units=i % 11,
                revenue=round((i % 11) * 12.34, 2),
                price=12.34,
                late_events=0,
            )
        )
    return rows


def _direct_columns(rows: list[Any], cols: tuple[str, ...]) -> list[list[Any]]:
    """The rows as clickhouse-driver columns in their cheapest list form: DateTime as int epoch
    seconds (sent as they are; ``datetime`` objects cost the driver a conversion per value)."""
    out: list[list[Any]] = []
    for c in cols:
        if c == "version":
            out.append([r.window_end for r in rows])
        elif c in ("window_start", "window_end"):
            out.append([getattr(r, c) // 1000 for r in rows])
        else:
            out.append([getattr(r, c) for r in rows])
    return out


def _project_sink(url: str, encoded: list[bytes], batch: int) -> float:
    """Seconds for the sink's own path over ``encoded`` aggregate messages: per polled batch,
    ``aggregate_columns`` (decode into columns) then ``ClickHouseSink.write`` (validation per
    column, columnar insert in the sink's thread), as ``SinkService._write`` does after a poll."""
    import asyncio

    from repricer.agents.sink import ClickHouseSink, aggregate_columns

    sink = ClickHouseSink(url)

    async def run() -> float:
        await sink.write({}, on_error=lambda exc: None)  # connect + schema, outside the timer
        t = time.perf_counter()
        for k in range(0, len(encoded), batch):
            await sink.write(aggregate_columns(encoded[k : k + batch]), on_error=_raise)
        return time.perf_counter() - t

    try:
        return asyncio.run(run())
    finally:
        sink.close()


def _raise(exc: Exception) -> None:
    raise exc


def sink(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Rows/s of the project's sink path ÷ one bulk columnar clickhouse-driver insert."""
    from datetime import UTC, datetime

    import msgspec
    from clickhouse_driver import Client

    from repricer.infra.clickhouse import connect
    from repricer.infra.clickhouse.tables import SALES_1M
    from repricer.infra.local.clickhouse_server import start_clickhouse_server

    n = 30_000 if quick else 100_000
    batch = 10_000
    repeats = 3 if quick else 5
    enc = msgspec.json.Encoder()
    rows = _sales_rows(n)
    # exactly what the window agent sends on the aggregates topic
    encoded = [enc.encode({"t": SALES_1M.tag, "r": r}) for r in rows]
    cols = SALES_1M.column_names
    # the direct inserts get their columns built outside the timer: they are the lower bound
    columnar = _direct_columns(rows, cols)
    columnar_dt = [
        [datetime.fromtimestamp(v, UTC) for v in col]
        if c in ("window_start", "window_end")
        else col
        for c, col in zip(cols, columnar, strict=True)
    ]
    insert = f"INSERT INTO {{db}}.sales_1m ({', '.join(cols)}) VALUES"
    with tmpdir("repricer-bench-sink-") as tmp:
        say(progress, "[bench sink] starting clickhouse-server on 127.0.0.1")
        server = start_clickhouse_server(tmp / "ch")
        try:
            client = Client(host="127.0.0.1", port=server.tcp_port)
            version = client.execute("SELECT version()")
            proj_rates, direct_rates, dt_rates, ratios = [], [], [], []
            for i in range(repeats):
                dbs = {k: f"bench_{k}{i}" for k in ("p", "d", "t")}
                for db in dbs.values():
                    b = connect(server.url(db))
                    b.init()
                    b.close()
                # alternate which goes first, so neither always gets the warmer server
                order = ("p", "d", "t") if i % 2 == 0 else ("d", "t", "p")
                rates: dict[str, float] = {}
                for k in order:
                    t = time.perf_counter()
                    if k == "p":
                        rates[k] = n / _project_sink(server.url(dbs["p"]), encoded, batch)
                        continue
                    client.execute(
                        insert.format(db=dbs[k]),
                        columnar if k == "d" else columnar_dt,
                        columnar=True,
                    )
                    rates[k] = n / (time.perf_counter() - t)
                got = client.execute(
                    "SELECT "
                    + ", ".join(f"(SELECT count() FROM {db}.sales_1m)" for db in dbs.values())
                )[0]
                # same rows: every database holds exactly the n rows, with the same content
                sums = client.execute(
                    "SELECT "
                    + ", ".join(
                        f"(SELECT sum(cityHash64(sku, window_start, window_end, orders, units, "
                        f"revenue, price, late_events, version)) FROM {db}.sales_1m)"
                        for db in dbs.values()
                    )
                )[0]
                for db in dbs.values():
                    client.execute(f"DROP DATABASE {db}")
                if tuple(got) != (n, n, n) or len(set(sums)) != 1:
                    raise RuntimeError(f"sink bench: row counts {got}, content hashes {sums}")
                proj_rates.append(rates["p"])
                direct_rates.append(rates["d"])
                dt_rates.append(rates["t"])
                ratios.append(rates["p"] / rates["d"])
                say(
                    progress,
                    f"[bench sink] repeat {i + 1}: project {rates['p']:,.0f} rows/s, "
                    f"direct {rates['d']:,.0f} rows/s (with datetime objects {rates['t']:,.0f})",
                )
            client.disconnect()
        finally:
            server.stop()
    return {
        "machine": machine(),
        "clickhouse_server": version[0][0] if version else None,
        "sink_rows": n,
        "sink_batch_rows": batch,
        "sink_repeats": repeats,
        **median_and_range("sink_ratio", ratios),
        **median_and_range("sink_rows_per_s_project", proj_rates, 0),
        **median_and_range("sink_rows_per_s_direct_bulk", direct_rates, 0),
        "sink_rows_per_s_direct_bulk_datetime_objects": round(statistics.median(dt_rates)),
        "sink_note": (
            "project = the sink's path after a poll: agents.sink.aggregate_columns on the "
            "aggregate messages the window agent sends ({'t': 'sales_1m', 'r': SalesWindow}, "
            "msgspec JSON) + ClickHouseSink.write (NativeBackend.insert_columns in the sink "
            f"thread: per-column validation, columnar insert) in batches of {batch}; "
            "direct = one columnar clickhouse-driver INSERT of all rows from pre-built lists "
            "with DateTime as int epoch seconds (its fastest list form; "
            "*_datetime_objects = the same with datetime objects); same rows, same server, "
            "fresh ReplacingMergeTree databases per repeat, order alternated, row counts and "
            "content hashes checked equal"
        ),
    }
