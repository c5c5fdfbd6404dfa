"""``repricer demo``: a local broker, embedded ClickHouse, the simulator and a worker, end to end."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from repricer.infra.clickhouse import connect
from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.local.tansu import TOPIC_READ_SETTLE_S, free_port, start_tansu
from repricer.streams import queries
from repricer.streams.settings import Settings
from repricer.streams.tools.runner import WorkerProcess, drained
from repricer.streams.tools.screenshot import capture, find_chromium
from repricer.streams.tools.simulate import SimReport, run_simulation


def run_demo(
    *,
    workdir: Path,
    skus: int,
    minutes: int,
    speed: float,
    seed: int,
    poison_every: int,
    quiet: bool,
    screenshot: Path | None = None,
) -> dict[str, Any]:
    chromium = find_chromium() if screenshot else ""  # before anything starts
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    t_start = time.monotonic()
    say(f"[demo] starting Tansu broker and embedded ClickHouse (chdb) under {workdir}")
    broker = start_tansu(workdir / "tansu")
    chdb_url = f"chdb://{(workdir / 'chdb').resolve()}"
    settings = Settings(
        broker=broker.url,
        clickhouse_url=chdb_url,
        data_dir=str(workdir / "faust"),
        partitions=4,
        cooldown_s=120,
        lateness_s=5,
        web_enabled=True,
        web_port=free_port(),
        # one worker on a local Tansu, which completes a group join only after half the session
        # timeout: 6 s starts the worker's three consumer groups in 3 s each instead of 15 s
        kafka_session_timeout_s=6.0,
        topic_read_settle_s=TOPIC_READ_SETTLE_S,  # Tansu's end offsets lag batched writes
    )
    dashboard_url = f"http://127.0.0.1:{settings.web_port}/"
    worker = WorkerProcess(settings, workdir / "worker.log")
    try:
        ensure_topics(settings)
        worker.start()
        say(f"[demo] worker started (log: {worker.log_path}); waiting for it to join")
        worker.wait_until(lambda st: st.get("uptime_s", 0) > 0, timeout=90)
        # always on stderr (also with --json, whose report goes to stdout): open it while it runs
        print(f"[demo] dashboard: {dashboard_url}", file=sys.stderr, flush=True)

        def progress(rep: SimReport) -> None:
            if rep.minutes % 10 and rep.minutes != minutes:
                return
            st = worker.stats()
            say(
                f"[demo] sim minute {rep.minutes:>4}/{minutes}  sent {rep.events:>7} events  "
                f"worker: {st.get('events_processed', 0):>7} in, "
                f"{st.get('windows_closed', 0):>6} windows, {st.get('price_changes', 0):>4} price "
                f"changes, {sum(st.get('dlq', {}).values()):>3} dead letters"
            )

        say(f"[demo] simulating {skus} SKUs for {minutes} minutes at {speed:g}x wall time")
        rep = asyncio.run(
            run_simulation(
                settings,
                skus=skus,
                minutes=minutes,
                speed=speed,
                seed=seed,
                poison_every=poison_every,
                on_minute=progress,
            )
        )
        expected = rep.events + skus  # + catalog items
        say("[demo] simulation done; waiting for the worker to drain into ClickHouse")
        stats = worker.wait_until(drained(expected), timeout=180, stable_s=2.0)
        if screenshot:
            # the dashboard charts the best seller of the followed SKUs repriced 3 times or more
            sku = max(
                rep.price_paths,
                key=lambda s: (
                    len(rep.price_paths[s]) > 3,
                    rep.realised.get(s, {}).get("units", 0),
                ),
            )
            size = capture(f"{dashboard_url}#sku={sku}", screenshot, chromium=chromium)
            say(f"[demo] dashboard screenshot ({sku}): {screenshot} ({size // 1024} KB)")
    finally:
        worker.stop()
        broker.stop()
    ch = connect(chdb_url)
    try:
        report = {
            "events_sent": rep.events,
            "events_processed": stats["events_processed"],
            "windows_closed": stats["windows_closed"],
            "quiet_windows": stats.get("quiet_windows", 0),
            "accounting": stats.get("accounting", {}),
            "unaccounted": stats.get("unaccounted", [0, 0]),
            "decisions": stats["decisions"],
            "price_changes": stats["price_changes"],
            "price_changes_applied_by_shop": rep.price_changes_applied,
            "dlq": sum(stats["dlq"].values()),
            "dlq_by_reason": dict(queries.dead_letters_by_reason(ch)),
            "clickhouse_rows": queries.row_counts(ch),
            "top_skus_by_revenue": [list(r) for r in queries.top_skus_by_revenue(ch)],
            "price_change_reasons": dict(queries.price_changes_by_reason(ch)),
            "price_paths": {
                s: [round(p, 2) for _, p in path] for s, path in rep.price_paths.items()
            },
            "dashboard_url": dashboard_url,
            "elapsed_s": round(time.monotonic() - t_start, 1),
        }
    finally:
        ch.close()
    return report


def print_report(report: dict[str, Any]) -> None:
    print("\n=== repricer demo report ===")
    print(f"events sent / processed : {report['events_sent']} / {report['events_processed']}")
    print(
        f"windows closed          : {report['windows_closed']} with events, "
        f"{report['quiet_windows']} quiet (decisions: {report['decisions']})"
    )
    acct = report["accounting"]
    accepted = sum(a["accepted"][0] for a in acct.values())
    where = {
        k: sum(a[k][0] for a in acct.values()) for k in ("emitted", "open", "late", "duplicate")
    }
    print(
        f"events accounted for    : {accepted} accepted = "
        + " + ".join(f"{v} {k}" for k, v in where.items())
        + f"; unaccounted {report['unaccounted'][0]}"
    )
    print(
        f"price changes published : {report['price_changes']} "
        f"(applied by the shop: {report['price_changes_applied_by_shop']})"
    )
    print(f"dead letters            : {report['dlq']} {report['dlq_by_reason']}")
    print(
        "ClickHouse rows (FINAL) : "
        + ", ".join(f"{k}={v}" for k, v in report["clickhouse_rows"].items())
    )
    print("price paths (first SKUs):")
    for sku, path in report["price_paths"].items():
        shown = " -> ".join(f"{p:.2f}" for p in path[:12]) + (" ..." if len(path) > 12 else "")
        print(f"  {sku}: {shown}")
    print("top SKUs by revenue (sku, units, revenue, avg price):")
    for row in report["top_skus_by_revenue"]:
        print("  ", *row)
    print(f"price-change reasons    : {report['price_change_reasons']}")
    print(f"elapsed                 : {report['elapsed_s']} s")
