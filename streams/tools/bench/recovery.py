"""``repricer bench recovery``: seconds from starting a replacement worker after kill -9 to
processing events again, beside a cold start of a fresh app id."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from repricer.streams.tools.bench.common import (
    MIN_MS,
    T0,
    Progress,
    bench_settings,
    machine,
    produce,
    say,
    tmpdir,
)


def _catalog_payloads(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        sku = f"SKU-{i:06d}"
        cost = 5.0 + (i % 50)
        body = {
            "sku": sku,
            "cost": cost,
            "base_price": round(cost * 1.6, 2),
            "min_price": round(cost * 1.1, 2),
            "max_price": round(cost * 4, 2),
        }
        out.append((sku.encode(), json.dumps(body).encode()))
    return out


def _recovery_clicks(first: int, n: int, skus: int, ts: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(first, first + n):
        sku = f"SKU-{(i * 7919) % skus:06d}"
        body = {"event_id": f"rec-{i}", "ts": ts, "session_id": "s", "sku": sku, "type": "view"}
        out.append((sku.encode(), json.dumps(body).encode()))
    return out


def _cold_start_s(tmp: Path, broker_url: str, s: Any, session_s: float) -> float:
    """Seconds from start to processing for a fresh app id on the topics of ``s``."""
    from repricer.streams.tools.runner import WorkerProcess

    cold = bench_settings(
        tmp,
        broker_url,
        "cold",
        topic_catalog=s.topic_catalog,
        topic_clicks=s.topic_clicks,
        idle_source_s=2,
        kafka_session_timeout_s=session_s,
    )
    w3 = WorkerProcess(cold, tmp / "worker-3.log", loglevel="warn")
    cold_wall = time.time()
    w3.start()
    try:
        st = w3.wait_until(lambda st: st.get("events_processed", 0) > 0, timeout=300)
        return float(st["updated_at"] - cold_wall)
    finally:
        w3.stop()


def recovery(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Seconds from starting a replacement worker after kill -9 to processing events again."""
    from repricer.infra.kafka_admin import ensure_topics
    from repricer.infra.local.tansu import start_tansu
    from repricer.streams.tools.runner import WorkerProcess

    n = 1_000 if quick else 100_000
    session_s = 6.0
    with tmpdir("repricer-bench-recovery-") as tmp:
        broker = start_tansu(tmp / "tansu")
        try:
            s = bench_settings(
                tmp,
                broker.url,
                "recovery",
                topic_catalog=f"bench-catalog-{uuid.uuid4().hex[:6]}",
                topic_clicks=f"bench-rclicks-{uuid.uuid4().hex[:6]}",
                idle_source_s=2,
                kafka_session_timeout_s=session_s,
            )
            ensure_topics(s)
            say(progress, f"[bench recovery] {n} catalog items + clicks closing two windows")
            produce(broker.bootstrap, s.topic_catalog, _catalog_payloads(n))
            clicks = _recovery_clicks(0, 200, n, T0) + _recovery_clicks(200, 200, n, T0 + MIN_MS)
            clicks += _recovery_clicks(400, 200, n, T0 + 2 * MIN_MS)
            produce(broker.bootstrap, s.topic_clicks, clicks)
            w1 = WorkerProcess(s, tmp / "worker-1.log", loglevel="warn")
            t = time.monotonic()
            w1.start()
            st = w1.wait_until(
                lambda st: (
                    st.get("ingested", {}).get("catalog", 0) >= n
                    and st.get("windows_closed", 0) > 0
                ),
                timeout=max(300.0, n / 50),  # ~230 catalog items/s measured on 2 cores
                stable_s=2.5,  # let the changelog sends and offset commits settle
            )
            first_fill_s = time.monotonic() - t
            say(progress, f"[bench recovery] worker holds {n} SKUs ({first_fill_s:.1f} s); kill -9")
            w1.kill()
            w2 = WorkerProcess(s, tmp / "worker-2.log", loglevel="warn")
            restart_wall = time.time()
            t = time.monotonic()
            w2.start()
            produce(broker.bootstrap, s.topic_clicks, _recovery_clicks(600, 20, n, T0 + 2 * MIN_MS))
            try:
                st = w2.wait_until(
                    lambda st: (
                        st.get("updated_at", 0) > restart_wall and st.get("events_processed", 0) > 0
                    ),
                    timeout=300,
                )
                recovery_s = st["updated_at"] - restart_wall
                wall_s = time.monotonic() - t
            finally:
                w2.stop()
            # baseline: the same start on the same topics with a fresh app id (no state to
            # rebuild, no dead group member to wait out); left out of --quick (a worker start)
            cold_s: float | None = None
            if not quick:
                cold_s = _cold_start_s(tmp, broker.url, s, session_s)
        finally:
            broker.stop()
    return {
        "machine": machine(),
        "recovery_skus": n,
        "recovery_s": round(recovery_s, 2),
        "recovery_wall_s": round(wall_s, 2),
        "recovery_cold_start_s": None if cold_s is None else round(cold_s, 2),
        "recovery_over_cold_start": None if cold_s is None else round(recovery_s / cold_s, 2),
        "recovery_first_fill_s": round(first_fill_s, 2),
        "recovery_session_timeout_s": session_s,
        "recovery_note": (
            "one run (no repeats): kill -9 of a worker holding the SKUs' table state (memory "
            "store, so the replacement rebuilds it from the changelog topics), then a new worker "
            "with the same app id; recovery_s = stats.json updated_at of its first sample with "
            "events_processed > 0 minus the start time (1 s stats resolution). Includes process "
            "start and model load, the consumer-group rebalance (the dead member's session "
            f"timeout was set to {session_s} s, default 30 s) and changelog replay; "
            "recovery_cold_start_s = the same measure for a fresh app id on the same topics "
            "(no state, no dead member; not measured with --quick)"
        ),
    }
