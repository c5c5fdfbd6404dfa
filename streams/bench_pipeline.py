"""Pipeline benchmarks: ingest, scale-out, decisions, sink, state size, crash recovery.

Every benchmark measures a RATIO of two things run side by side in the same process or run, on
the same data (what to compare across machines), with the absolute numbers alongside, labelled
with the machine. Repeats give min/median/max. Every server runs on 127.0.0.1 in a temporary
directory and every run is bounded in event count and in time.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Progress = Callable[[str], None] | None

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN_MS = 60_000


def _machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _say(progress: Progress, msg: str) -> None:
    if progress:
        progress(msg)


def _mmm(xs: list[float], nd: int = 3) -> list[float]:
    """[min, median, max] rounded."""
    return [round(min(xs), nd), round(statistics.median(xs), nd), round(max(xs), nd)]


def _median_and_range(key: str, xs: list[float], nd: int = 3) -> dict[str, Any]:
    """``key``: the median of ``xs`` (a whole number for ``nd=0``), ``key_min_median_max``:
    :func:`_mmm`.

    >>> _median_and_range("r", [1.0, 2.0, 4.0], 0)
    {'r': 2, 'r_min_median_max': [1.0, 2.0, 4.0]}
    """
    med = statistics.median(xs)
    return {key: round(med, nd) if nd else round(med), f"{key}_min_median_max": _mmm(xs, nd)}


def _p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


@contextmanager
def _tmpdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


# --------------------------------------------------------------------------- 1. ingest

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


def _click_payloads(n: int, skus: int = 1000, minutes: int = 5) -> list[tuple[bytes, bytes]]:
    """``n`` valid click events of ~200 bytes, event time spread over ``minutes`` minutes."""
    out = []
    kinds = ("view", "view", "view", "add_to_cart", "remove_from_cart")
    span = minutes * MIN_MS
    for i in range(n):
        sku = f"SKU-{i % skus:06d}"
        body = {
            "event_id": f"bench-{i:09d}-{uuid.UUID(int=i).hex}",
            "ts": T0 + (i * span) // n,
            "session_id": f"session-{i % 9973:06d}-{uuid.UUID(int=i * 7 + 1).hex[:20]}",
            "sku": sku,
            "type": kinds[i % len(kinds)],
        }
        out.append((sku.encode(), json.dumps(body).encode()))
    return out


def _produce(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1
    )
    try:
        for key, value in payloads:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()


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


def _bench_settings(tmp: Path, broker_url: str, tag: str, **kw: Any) -> Any:
    from streams.settings import Settings

    # Tansu completes a consumer-group join only after half the session timeout: 6 s makes a
    # worker's three joins 3 s each instead of 15 s (timed figures start at the first record)
    kw.setdefault("kafka_session_timeout_s", 6.0)
    return Settings(
        app_id=f"bench-{tag}-{uuid.uuid4().hex[:6]}",
        broker=broker_url,
        clickhouse_url=f"chdb://{tmp / ('chdb-' + tag)}?database=bench",
        data_dir=str(tmp / f"faust-{tag}"),
        web_enabled=False,
        **kw,
    )


def _run_pipeline_ingest(
    tmp: Path, broker_url: str, topic: str, n: int, i: int
) -> tuple[float, str]:
    """Events/s through the worker's whole per-event path, from its stats.json samples: decoded,
    repartitioned and folded into SKU windows by the window agent (first > 0 to >= n); and the
    class of the event loop the worker ran on."""
    from streams.runner import WorkerProcess

    s = _bench_settings(tmp, broker_url, f"ingest{i}", topic_clicks=topic, idle_source_s=2)
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
        "machine": _machine(),
        "ingest_events": n,
        "ingest_event_bytes": round(avg_bytes),
        "ingest_repeats": repeats,
        **_median_and_range("ingest_ratio", [p / f for p, f in zip(pipeline, faust, strict=True)]),
    }
    if quix:
        ratios = [p / q for p, q in zip(pipeline, quix, strict=True)]
        report.update(_median_and_range("ingest_ratio_quix", ratios))
    else:
        report.update({"ingest_ratio_quix": None, "ingest_ratio_quix_min_median_max": None})
    report.update(_median_and_range("ingest_events_per_s_pipeline", pipeline, 0))
    report.update(_median_and_range("ingest_events_per_s_faust_count_only", faust, 0))
    if quix:
        report.update(_median_and_range("ingest_events_per_s_quix_count_only", quix, 0))
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
    from infra.kafka_admin import ensure_topics
    from infra.local.tansu import start_tansu

    n = 10_000 if quick else 50_000
    repeats = 1 if quick else 3  # each worker start + group join costs a few seconds here
    topic = f"bench-clicks-{uuid.uuid4().hex[:6]}"
    quix_version = _quix_version()
    if quix_version is None:
        _say(progress, "[bench ingest] quixstreams not installed: no Quix count-only baseline")
    loops: dict[str, str] = {}
    faust_rates: list[float] = []
    quix_rates: list[float] = []
    pipe_rates: list[float] = []
    with _tmpdir("repricer-bench-ingest-") as tmp:
        broker = start_tansu(tmp / "tansu")
        try:
            # the worker reads the same settings (env) as this: the loop for the Faust baseline
            s = _bench_settings(tmp, broker.url, "topics", topic_clicks=topic)
            ensure_topics(s)
            payloads = _click_payloads(n)
            avg_bytes = sum(len(v) for _, v in payloads) / n
            _say(progress, f"[bench ingest] producing {n} clicks (~{avg_bytes:.0f} B) to {topic}")
            _produce(broker.bootstrap, topic, payloads)
            for i in range(repeats):
                _say(
                    progress,
                    f"[bench ingest] repeat {i + 1}/{repeats}: Faust count-only agent "
                    f"({s.event_loop})",
                )
                f = _run_faust_count(tmp, broker.url, topic, n, i, s.event_loop)
                faust_rates.append(n / f["elapsed_s"])
                loops["faust_count_only"] = f["loop"]
                _say(progress, f"[bench ingest]   {faust_rates[-1]:,.0f} ev/s on {f['loop']}")
                if quix_version:
                    _say(progress, "[bench ingest]   Quix Streams count-only app")
                    q = _run_quix_count(tmp, broker.bootstrap, topic, n, i)
                    quix_rates.append(n / q["elapsed_s"])
                    _say(progress, f"[bench ingest]   {quix_rates[-1]:,.0f} ev/s")
                _say(progress, "[bench ingest]   the repricer worker")
                p_rate, loops["pipeline"] = _run_pipeline_ingest(tmp, broker.url, topic, n, i)
                pipe_rates.append(p_rate)
                _say(progress, f"[bench ingest]   {p_rate:,.0f} ev/s on {loops['pipeline']}")
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


# --------------------------------------------------------------------------- 1b. scale-out


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _fold_run(
    tmp: Path, broker: Any, topic: str, n: int, workers: int, tag: str, progress: Progress
) -> dict[str, float]:
    """``workers`` worker processes in one consumer group fold the ``n`` events of ``topic``.

    Returns events/s from the first records read (by any worker) to the n-th event folded,
    from the workers' stats files (group joins and rebalances included), and the CPU seconds
    the workers and the broker used over about that span (sampled from /proc every 0.2 s).
    """
    from streams.runner import WorkerProcess

    base = _bench_settings(tmp, broker.url, tag, topic_clicks=topic, idle_source_s=2)
    procs = []
    for i in range(workers):
        ws = base.model_copy(
            update={
                "data_dir": str(tmp / f"faust-{tag}-{i}"),
                "clickhouse_url": f"chdb://{tmp / f'chdb-{tag}-{i}'}?database=bench",
            }
        )
        procs.append(WorkerProcess(ws, tmp / f"worker-{tag}-{i}.log", loglevel="warn"))
    for w in procs:
        w.start()
    pids = [broker.process.pid] + [w.proc.pid for w in procs if w.proc is not None]
    cpu: list[tuple[float, float]] = []  # (wall time, CPU seconds of broker + workers)
    deadline = time.monotonic() + max(300.0, n / 500)
    try:
        while True:
            cpu.append((time.time(), sum(_cpu_s(pid) for pid in pids)))
            sts = [w.stats() for w in procs]
            folded = sum(st.get("events_folded", 0) for st in sts)
            if folded >= n:
                break
            for w in procs:
                if not w.alive():
                    raise RuntimeError(f"worker exited; see {w.log_path}:\n{w.tail_log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} worker(s) folded {folded} of {n} events")
            time.sleep(0.2)
    finally:
        for w in procs:
            w.stop()
    first = min(st["first_read_at"] for st in sts if st.get("first_read_at"))
    last = max(st.get("last_fold_at", 0.0) for st in sts)
    before = [c for c in cpu if c[0] <= first] or cpu[:1]
    t0, c0 = before[-1]
    t1, c1 = cpu[-1]
    wall = last - first
    _say(
        progress,
        f"[bench scaleout] {workers} worker(s): {n / wall:,.0f} ev/s "
        f"({wall:.1f} s, {(c1 - c0) / max(1e-6, t1 - t0):.2f} cores busy)",
    )
    return {"rate": n / wall, "wall_s": wall, "cpu_s": c1 - c0, "cpu_span_s": t1 - t0}


def scaleout(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Events/s of two workers in one consumer group ÷ one worker, same broker and events."""
    from infra.kafka_admin import ensure_topics
    from infra.local.tansu import start_tansu

    n = 20_000 if quick else 150_000
    skus, minutes = (1_000, 5) if quick else (4_000, 10)
    partitions = 4
    repeats = 1 if quick else 2
    topic = f"bench-sclicks-{uuid.uuid4().hex[:6]}"
    cores = os.cpu_count() or 1
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with _tmpdir("repricer-bench-scaleout-") as tmp:
        broker = start_tansu(tmp / "tansu")
        try:
            ensure_topics(
                _bench_settings(tmp, broker.url, "topics", topic_clicks=topic, partitions=4)
            )
            _say(progress, f"[bench scaleout] producing {n} clicks over {partitions} partitions")
            _produce(broker.bootstrap, topic, _click_payloads(n, skus=skus, minutes=minutes))
            for i in range(repeats):
                for workers in (1, 2) if i % 2 == 0 else (2, 1):
                    runs[workers].append(
                        _fold_run(tmp, broker, topic, n, workers, f"s{workers}w{i}", progress)
                    )
        finally:
            broker.stop()
    ratio = [b["rate"] / a["rate"] for a, b in zip(runs[1], runs[2], strict=True)]

    def med(k: int, key: str) -> float:
        return statistics.median(r[key] for r in runs[k])

    def busy(k: int) -> float:  # cores kept busy by the broker and the workers
        return statistics.median(r["cpu_s"] / r["cpu_span_s"] for r in runs[k])

    return {
        "machine": _machine(),
        "scaleout_events": n,
        "scaleout_partitions": partitions,
        "scaleout_repeats": repeats,
        **_median_and_range("scaleout_ratio", ratio),
        "scaleout_events_per_s_one_worker": round(med(1, "rate")),
        "scaleout_events_per_s_two_workers": round(med(2, "rate")),
        "scaleout_cpu_cores": cores,
        "scaleout_cpu_available_ratio": round(min(cores, 2) / 1, 2),
        "scaleout_cores_busy": [round(busy(1), 2), round(busy(2), 2)],
        "scaleout_note": (
            f"same pre-produced topic ({n} clicks, {partitions} partitions, {skus} SKUs), one "
            "Tansu broker; each run a fresh app id (fresh consumer groups and state) with 1 or "
            "2 `repricer worker` processes started together; scaleout_ratio = events/s of two "
            "workers ÷ one, each from the first records read to the n-th event folded (from "
            "the workers' stats files; group joins and rebalances included); "
            "cpu_available_ratio = cores two workers can use ÷ cores one can (one Python "
            "event loop each, capped by the machine's cores, which the broker shares); "
            "cores_busy = [1, 2 workers] CPU seconds of broker + workers per wall second over "
            "the run (sampled from /proc), out of scaleout_cpu_cores"
        ),
    }


# --------------------------------------------------------------------------- 2. decisions


def _engine() -> Any:
    """The worker's engine (``streams.build``) from the environment's settings, for a feed that
    closes each window itself (no allowed lateness)."""
    from streams.build import build_engine
    from streams.settings import Settings

    return build_engine(Settings().model_copy(update={"lateness_s": 0}))


class _InProcess:
    """One partition of the real engine over dict tables, fed from the market simulator."""

    def __init__(self, skus: int, seed: int = 7) -> None:
        from streams.backtest import EngineFeed
        from streams.simulator import Market

        self.feed = EngineFeed(_engine())
        self.market = Market(n_skus=skus, seed=seed, start_ms=T0)
        self.w = 0
        self.feed.catalog(self.market)

    def window(self) -> tuple[float, Any]:
        """Fold one window of counts for every SKU, then time the watermark that closes it."""
        t0 = T0 + self.w * MIN_MS
        self.w += 1
        self.feed.counts(t0, self.market.step_counts(t0, t0 + MIN_MS))
        t = time.perf_counter()
        out = self.feed.close(t0 + MIN_MS)
        dt = time.perf_counter() - t
        for ch in out.changes:
            self.market.apply_price(ch.sku, ch.new_price, t0 + MIN_MS)
        return dt, out


def decisions(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """SKUs decided per second in the tick that closes a window for every SKU at once."""
    n = 2_000 if quick else 10_000
    warmup, repeats = (1, 2) if quick else (2, 3)
    ip = _InProcess(n)
    members = [m.name for m in ip.feed.engine.decider.models()]
    _say(
        progress,
        f"[bench decisions] {n} SKUs, the worker's policy ({' + '.join(members)}), "
        f"{warmup} warm-up windows",
    )
    for _ in range(warmup):
        ip.window()
    ticks, rates, decided, changes = [], [], [], []
    for i in range(repeats):
        dt, out = ip.window()
        ticks.append(dt)
        decided.append(out.decisions)
        changes.append(len(out.changes))
        rates.append(out.decisions / dt)
        _say(progress, f"[bench decisions] window {i + 1}: {out.decisions} decided in {dt:.2f} s")
    return {
        "machine": _machine(),
        "decision_skus": n,
        "decision_windows_timed": repeats,
        "decision_warmup_windows": warmup,
        "decision_models": members,
        **_median_and_range("decisions_per_s", rates, 0),
        "decision_p99_s": round(_p99(ticks), 3),
        "decision_tick_s_min_median_max": _mmm(ticks),
        "decisions_per_tick": decided,
        "price_changes_per_tick": changes,
        "decision_note": (
            f"{n} SKUs per tick{' (--quick; the full run has 10000)' if quick else ''}; "
            "the worker's engine (streams.build.build_engine, the settings from the environment "
            "with no allowed lateness), "
            "in process, one partition, dict tables: seconds of the WatermarkEnv that closes the "
            "window for every SKU at once (window close -> all price changes ready, before any "
            "Kafka send); p99 over only the timed windows (so effectively their max)"
        ),
    }


# --------------------------------------------------------------------------- 3. sink


def _sales_rows(n: int) -> list[Any]:
    """``n`` SalesWindow rows: n/10 SKUs over 10 windows."""
    from schemas import SalesWindow

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

    from agents.sink import ClickHouseSink, aggregate_columns

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

    from infra.clickhouse import connect
    from infra.clickhouse.tables import SALES_1M
    from infra.local.clickhouse_server import start_clickhouse_server

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
    with _tmpdir("repricer-bench-sink-") as tmp:
        _say(progress, "[bench sink] starting clickhouse-server on 127.0.0.1")
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
                _say(
                    progress,
                    f"[bench sink] repeat {i + 1}: project {rates['p']:,.0f} rows/s, "
                    f"direct {rates['d']:,.0f} rows/s (with datetime objects {rates['t']:,.0f})",
                )
            client.disconnect()
        finally:
            server.stop()
    return {
        "machine": _machine(),
        "clickhouse_server": version[0][0] if version else None,
        "sink_rows": n,
        "sink_batch_rows": batch,
        "sink_repeats": repeats,
        **_median_and_range("sink_ratio", ratios),
        **_median_and_range("sink_rows_per_s_project", proj_rates, 0),
        **_median_and_range("sink_rows_per_s_direct_bulk", direct_rates, 0),
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


# --------------------------------------------------------------------------- 4. memory


def _json_bytes(table: dict[str, Any]) -> int:
    return sum(len(json.dumps(k)) + len(json.dumps(v)) for k, v in table.items())


def _state_at(n: int, windows: int, history_len: int) -> dict[str, float]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    ip = _InProcess(n, seed=3)
    for _ in range(windows):
        ip.window()
    feed = ip.feed
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sizes = {name: _json_bytes(t) for name, t in (("skus", feed.skus), ("opens", feed.opens))}
    sizes["meta"] = _json_bytes(feed.meta)
    total = sum(sizes.values())
    hist_rows = [len(st.get("hist") or []) for st in feed.skus.values()]
    row_bytes = [
        len(json.dumps(r)) + 1
        for st in list(feed.skus.values())[:200]
        for r in st.get("hist") or []
    ]
    per_row = statistics.mean(row_bytes) if row_bytes else 0.0
    missing = max(0.0, history_len - statistics.mean(hist_rows)) if hist_rows else 0.0
    return {
        "json_bytes_per_sku": total / n,
        "json_bytes_per_sku_skus": sizes["skus"] / n,
        "json_bytes_per_sku_opens": sizes["opens"] / n,
        "json_bytes_meta_total": sizes["meta"],
        "json_bytes_per_sku_full_history_est": total / n + missing * per_row,
        "tracemalloc_peak_bytes_per_sku": (peak - base) / n,
        "tracemalloc_retained_bytes_per_sku": (current - base) / n,
    }


def memory(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Bytes of table state per SKU at two SKU counts, and how linear it is."""
    small, large = (1_000, 5_000) if quick else (10_000, 100_000)
    windows = 3
    history_len = _engine().history_len
    res = {}
    for n in (small, large):
        _say(progress, f"[bench memory] {n} SKUs x {windows} windows (tracemalloc on)")
        res[n] = _state_at(n, windows, history_len)
    s, lg = res[small], res[large]
    return {
        "machine": _machine(),
        "memory_skus": [small, large],
        "memory_windows": windows,
        "state_bytes_per_sku": round(lg["json_bytes_per_sku"]),
        "state_bytes_per_sku_small": round(s["json_bytes_per_sku"]),
        "state_bytes_per_sku_by_table": {
            "skus": round(lg["json_bytes_per_sku_skus"]),
            "opens": round(lg["json_bytes_per_sku_opens"]),
            "meta_total_bytes": lg["json_bytes_meta_total"],
        },
        "state_bytes_per_sku_full_history_est": round(lg["json_bytes_per_sku_full_history_est"]),
        "state_linearity_large_over_small": round(
            lg["json_bytes_per_sku"] / s["json_bytes_per_sku"], 3
        ),
        "tracemalloc_peak_bytes_per_sku": [
            round(s["tracemalloc_peak_bytes_per_sku"]),
            round(lg["tracemalloc_peak_bytes_per_sku"]),
        ],
        "tracemalloc_retained_bytes_per_sku": [
            round(s["tracemalloc_retained_bytes_per_sku"]),
            round(lg["tracemalloc_retained_bytes_per_sku"]),
        ],
        "tracemalloc_linearity_large_over_small": round(
            lg["tracemalloc_peak_bytes_per_sku"] / s["tracemalloc_peak_bytes_per_sku"], 3
        ),
        "memory_note": (
            f"JSON changelog bytes (key + value) of skus + opens + meta after {windows} closed "
            f"windows, / SKUs; the per-SKU LSTM history grows to {history_len} rows, so "
            "*_full_history_est adds the missing rows at the measured bytes per row; "
            "tracemalloc pairs are [small, large] and include the engine's transient "
            "allocations during the window ticks (peak) and the Market simulator (retained)"
        ),
    }


# --------------------------------------------------------------------------- 5. recovery


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
    from streams.runner import WorkerProcess

    cold = _bench_settings(
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
    from infra.kafka_admin import ensure_topics
    from infra.local.tansu import start_tansu
    from streams.runner import WorkerProcess

    n = 1_000 if quick else 100_000
    session_s = 6.0
    with _tmpdir("repricer-bench-recovery-") as tmp:
        broker = start_tansu(tmp / "tansu")
        try:
            s = _bench_settings(
                tmp,
                broker.url,
                "recovery",
                topic_catalog=f"bench-catalog-{uuid.uuid4().hex[:6]}",
                topic_clicks=f"bench-rclicks-{uuid.uuid4().hex[:6]}",
                idle_source_s=2,
                kafka_session_timeout_s=session_s,
            )
            ensure_topics(s)
            _say(progress, f"[bench recovery] {n} catalog items + clicks closing two windows")
            _produce(broker.bootstrap, s.topic_catalog, _catalog_payloads(n))
            clicks = _recovery_clicks(0, 200, n, T0) + _recovery_clicks(200, 200, n, T0 + MIN_MS)
            clicks += _recovery_clicks(400, 200, n, T0 + 2 * MIN_MS)
            _produce(broker.bootstrap, s.topic_clicks, clicks)
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
            _say(
                progress, f"[bench recovery] worker holds {n} SKUs ({first_fill_s:.1f} s); kill -9"
            )
            w1.kill()
            w2 = WorkerProcess(s, tmp / "worker-2.log", loglevel="warn")
            restart_wall = time.time()
            t = time.monotonic()
            w2.start()
            _produce(
                broker.bootstrap, s.topic_clicks, _recovery_clicks(600, 20, n, T0 + 2 * MIN_MS)
            )
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
        "machine": _machine(),
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


# --------------------------------------------------------------------------- dispatch

BENCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "ingest": ingest,
    "scaleout": scaleout,
    "decisions": decisions,
    "sink": sink,
    "memory": memory,
    "recovery": recovery,
}


def run_pipeline_bench(what: str, quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """One pipeline benchmark by name, or ``all`` of them merged into one dict."""
    if what in BENCHES:
        return BENCHES[what](quick=quick, progress=progress)
    if what != "all":
        raise ValueError(f"unknown pipeline benchmark {what!r}")
    report: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, fn in BENCHES.items():
        t = time.monotonic()
        try:
            report.update(fn(quick=quick, progress=progress))
        except Exception as exc:  # one failing bench must not hide the others' numbers
            errors[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
            _say(progress, f"[bench {name}] FAILED: {errors[name]}")
        report.setdefault("bench_seconds", {})[name] = round(time.monotonic() - t, 1)
    if errors:
        report["errors"] = errors
    return report
