"""``repricer bench ingest``: the worker's events/s (decoded, repartitioned and folded into
windows) ÷ an idiomatic Faust count-only agent on the same event loop, and ÷ an idiomatic Quix
Streams count-only app, back to back on the same broker and topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from repricer.streams.tools.bench.common import (
    Progress,
    bench_settings,
    click_payloads,
    machine,
    median_and_range,
    produce,
    say,
    tmpdir,
)

_FAUST_COUNT_APP = '''
"""Idiomatic Faust count-only agent (faust.Record JSON values) on the worker's event loop."""
import asyncio
import json
import os
import time

import faust

if os.environ["BENCH_EVENT_LOOP"] == "uvloop":  # as `repricer worker` (streams/cli.py) does
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

N = int(os.environ["BENCH_N"])
OUT = os.environ["BENCH_OUT"]
app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=os.environ["BENCH_BROKER"],
    store="memory://",
    datadir=os.environ["BENCH_DATADIR"],
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,
    broker_session_timeout=6.0,  # as the repricer workers here: quicker group joins on Tansu
    broker_heartbeat_interval=2.0,
)


class Click(faust.Record, serializer="json"):
    event_id: str
    ts: int
    session_id: str
    sku: str
    type: str


topic = app.topic(os.environ["BENCH_TOPIC"], value_type=Click)
state = {"n": 0, "t0": 0.0}


@app.agent(topic)
async def count(stream):
    async for _click in stream:
        if state["n"] == 0:
            state["t0"] = time.perf_counter()
            loop = type(asyncio.get_running_loop())
            state["loop"] = f"{loop.__module__}.{loop.__qualname__}"
        state["n"] += 1
        if state["n"] >= N:
            elapsed = time.perf_counter() - state["t0"]
            with open(OUT, "w") as f:
                json.dump({"n": state["n"], "elapsed_s": elapsed, "loop": state["loop"]}, f)
            os._exit(0)


if __name__ == "__main__":
    faust.Worker(app, loglevel="warn").execute_from_commandline()
'''

_QUIX_COUNT_APP = '''
"""Idiomatic Quix Streams count-only app: a StreamingDataFrame over JSON values."""
import json
import os
import time

from quixstreams import Application

N = int(os.environ["BENCH_N"])
OUT = os.environ["BENCH_OUT"]
app = Application(
    broker_address=os.environ["BENCH_BOOTSTRAP"],
    consumer_group=os.environ["BENCH_APP_ID"],
    auto_offset_reset="earliest",
    state_dir=os.environ["BENCH_DATADIR"],
    auto_create_topics=False,  # the bench created the topic
    use_changelog_topics=False,  # stateless: no state, no changelog
    loglevel="WARNING",
    # as the repricer workers here: quicker group joins on Tansu
    consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000},
)
state = {"n": 0, "t0": 0.0}


def count(_click):
    if state["n"] == 0:
        state["t0"] = time.perf_counter()
    state["n"] += 1
    if state["n"] >= N:
        elapsed = time.perf_counter() - state["t0"]
        with open(OUT, "w") as f:
            json.dump({"n": state["n"], "elapsed_s": elapsed}, f)
        os._exit(0)


sdf = app.dataframe(app.topic(os.environ["BENCH_TOPIC"], value_deserializer="json"))
sdf = sdf.update(count)

if __name__ == "__main__":
    app.run()
'''

# what the report says of each side's event loop when the side has none
QUIX_LOOP = "none (synchronous poll loop over librdkafka's background threads)"


def _run_count_app(
    tmp: Path, kind: str, source: str, env_extra: dict[str, str], n: int, i: int
) -> dict[str, Any]:
    """Run a count-only app (``kind``: faust or quix) in its own process until it has counted
    ``n`` records; its own report: ``n``, ``elapsed_s`` (first record to the n-th) and so on."""
    app_py = tmp / f"{kind}_count_app.py"
    app_py.write_text(source)
    out = tmp / f"{kind}-count-{i}.json"
    env = {
        **os.environ,
        **env_extra,
        "BENCH_N": str(n),
        "BENCH_OUT": str(out),
        "BENCH_APP_ID": f"bench-{kind}-count-{uuid.uuid4().hex[:8]}",
        "BENCH_DATADIR": str(tmp / f"{kind}-count-data-{i}"),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp / f"{kind}-count-{i}.log"
    args = ["worker", "--loglevel", "warning"] if kind == "faust" else []
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(app_py), *args],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise TimeoutError(f"{kind} count-only app did not reach {n} events in 180 s") from None
    if not out.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{kind} count-only app failed:\n{tail}")
    return dict(json.loads(out.read_text()))


def _run_faust_count(
    tmp: Path, broker_url: str, topic: str, n: int, i: int, event_loop: str
) -> dict[str, Any]:
    env = {"BENCH_BROKER": broker_url, "BENCH_TOPIC": topic, "BENCH_EVENT_LOOP": event_loop}
    return _run_count_app(tmp, "faust", _FAUST_COUNT_APP, env, n, i)


def _run_quix_count(tmp: Path, bootstrap: str, topic: str, n: int, i: int) -> dict[str, Any]:
    env = {"BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": topic}
    return _run_count_app(tmp, "quix", _QUIX_COUNT_APP, env, n, i)


def _run_pipeline_ingest(
    tmp: Path, broker_url: str, topic: str, n: int, i: int
) -> tuple[float, str]:
    """Events/s through the worker's whole per-event path, from its stats.json samples: decoded,
    repartitioned and folded into SKU windows by the window agent (first > 0 to >= n); and the
    class of the event loop the worker ran on."""
    from repricer.streams.tools.runner import WorkerProcess

    s = bench_settings(tmp, broker_url, f"ingest{i}", topic_clicks=topic, idle_source_s=2)
    worker = WorkerProcess(s, tmp / f"worker-ingest-{i}.log", loglevel="warn").start()
    try:
        last = worker.wait_until(lambda st: st.get("events_folded", 0) >= n, timeout=180)
    finally:
        worker.stop()
    # from the moment ingest got its first records (decode and forward of the first batch
    # included) to the N-th event folded into its window
    rate = float(last["events_folded"]) / max(1e-6, last["last_fold_at"] - last["first_read_at"])
    return rate, str(last.get("event_loop") or "?")


def _quix_version() -> str | None:
    """quixstreams' version, or None when it is not installed (it is a dev extra)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("quixstreams")
    except PackageNotFoundError:
        return None


def ingest_report(
    *,
    n: int,
    avg_bytes: float,
    pipeline: list[float],
    faust: list[float],
    quix: list[float],
    loops: dict[str, str],
    quix_version: str | None,
    event_loop_setting: str,
) -> dict[str, Any]:
    """The ingest bench's figures from the rates (events/s) of each repeat.

    Ratios are taken per repeat (the three ran back to back on the same topic), then the
    median and [min, median, max] of those ratios; ``quix`` is empty when quixstreams is not
    installed, and its figures are then None.

    >>> r = ingest_report(n=10, avg_bytes=200.0, pipeline=[10.0, 12.0], faust=[5.0, 8.0],
    ...     quix=[40.0, 60.0], loops={}, quix_version="3.28.1", event_loop_setting="uvloop")
    >>> r["ingest_ratio"], r["ingest_ratio_quix"], r["ingest_ratio_quix_min_median_max"]
    (1.75, 0.225, [0.2, 0.225, 0.25])
    """
    repeats = len(pipeline)
    report: dict[str, Any] = {
        "machine": machine(),
        "ingest_events": n,
        "ingest_event_bytes": round(avg_bytes),
        "ingest_repeats": repeats,
        **median_and_range("ingest_ratio", [p / f for p, f in zip(pipeline, faust, strict=True)]),
    }
    if quix:
        ratios = [p / q for p, q in zip(pipeline, quix, strict=True)]
        report.update(median_and_range("ingest_ratio_quix", ratios))
    else:
        report.update({"ingest_ratio_quix": None, "ingest_ratio_quix_min_median_max": None})
    report.update(median_and_range("ingest_events_per_s_pipeline", pipeline, 0))
    report.update(median_and_range("ingest_events_per_s_faust_count_only", faust, 0))
    if quix:
        report.update(median_and_range("ingest_events_per_s_quix_count_only", quix, 0))
    else:
        report["ingest_events_per_s_quix_count_only"] = None
        report["ingest_events_per_s_quix_count_only_min_median_max"] = None
    report["ingest_event_loop"] = {
        "setting": event_loop_setting,
        "pipeline": loops.get("pipeline"),
        "faust_count_only": loops.get("faust_count_only"),
        "quix_count_only": QUIX_LOOP if quix else None,
    }
    report["ingest_quixstreams_version"] = quix_version
    report["ingest_note"] = (
        "pipeline = `repricer worker` (the production app from create_app, chdb sink) rate of "
        "stats events_folded (decoded, repartitioned and folded into windows), timed by the "
        "worker from ingest's first records to the N-th event folded; "
        "faust count-only = a faust.Record JSON agent on the same event loop as the worker "
        f"(REPRICER_EVENT_LOOP={event_loop_setting}), timed from its first event to the N-th; "
        "quix count-only = a Quix Streams StreamingDataFrame with JSON values and one update() "
        "callback that counts (librdkafka consumer, no asyncio loop), timed the same way; "
        "ingest_ratio = pipeline / faust, ingest_ratio_quix = pipeline / quix, per repeat; "
        "each in its own process, one after another, on the same pre-produced topic with "
        "fresh consumer groups and a 6 s session timeout, one broker (Tansu, memory storage) "
        "on this machine"
        + ("" if quix else "; quixstreams is not installed (pip install -e '.[dev]')")
    )
    return report


def ingest(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Full pipeline ingest events/s ÷ an idiomatic Faust count-only agent's events/s on the
    same event loop, and ÷ an idiomatic Quix Streams count-only app's events/s."""
    from repricer.infra.kafka_admin import ensure_topics
    from repricer.infra.local.tansu import start_tansu

    n = 10_000 if quick else 50_000
    repeats = 1 if quick else 3  # each worker start + group join costs a few seconds here
    topic = f"bench-clicks-{uuid.uuid4().hex[:6]}"
    quix_version = _quix_version()
    if quix_version is None:
        say(progress, "[bench ingest] quixstreams not installed: no Quix count-only baseline")
    loops: dict[str, str] = {}
    faust_rates: list[float] = []
    quix_rates: list[float] = []
    pipe_rates: list[float] = []
    with tmpdir("repricer-bench-ingest-") as tmp:
        broker = start_tansu(tmp / "tansu")
        try:
            # the worker reads the same settings (env) as this: the loop for the Faust baseline
            s = bench_settings(tmp, broker.url, "topics", topic_clicks=topic)
            ensure_topics(s)
            payloads = click_payloads(n)
            avg_bytes = sum(len(v) for _, v in payloads) / n
            say(progress, f"[bench ingest] producing {n} clicks (~{avg_bytes:.0f} B) to {topic}")
            produce(broker.bootstrap, topic, payloads)
            for i in range(repeats):
                say(
                    progress,
                    f"[bench ingest] repeat {i + 1}/{repeats}: Faust count-only agent "
                    f"({s.event_loop})",
                )
                f = _run_faust_count(tmp, broker.url, topic, n, i, s.event_loop)
                faust_rates.append(n / f["elapsed_s"])
                loops["faust_count_only"] = f["loop"]
                say(progress, f"[bench ingest]   {faust_rates[-1]:,.0f} ev/s on {f['loop']}")
                if quix_version:
                    say(progress, "[bench ingest]   Quix Streams count-only app")
                    q = _run_quix_count(tmp, broker.bootstrap, topic, n, i)
                    quix_rates.append(n / q["elapsed_s"])
                    say(progress, f"[bench ingest]   {quix_rates[-1]:,.0f} ev/s")
                say(progress, "[bench ingest]   the repricer worker")
                p_rate, loops["pipeline"] = _run_pipeline_ingest(tmp, broker.url, topic, n, i)
                pipe_rates.append(p_rate)
                say(progress, f"[bench ingest]   {p_rate:,.0f} ev/s on {loops['pipeline']}")
        finally:
            broker.stop()
    return ingest_report(
        n=n,
        avg_bytes=avg_bytes,
        pipeline=pipe_rates,
        faust=faust_rates,
        quix=quix_rates,
        loops=loops,
        quix_version=quix_version,
        event_loop_setting=s.event_loop,
    )
