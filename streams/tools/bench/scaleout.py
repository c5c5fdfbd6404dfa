"""``repricer bench scaleout``: events/s of two workers in one consumer group ÷ one worker,
same broker and events, with the CPU the broker and the workers used."""

from __future__ import annotations

import os
import statistics
import time
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
    from repricer.streams.tools.runner import WorkerProcess

    base = bench_settings(tmp, broker.url, tag, topic_clicks=topic, idle_source_s=2)
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
    say(
        progress,
        f"[bench scaleout] {workers} worker(s): {n / wall:,.0f} ev/s "
        f"({wall:.1f} s, {(c1 - c0) / max(1e-6, t1 - t0):.2f} cores busy)",
    )
    return {"rate": n / wall, "wall_s": wall, "cpu_s": c1 - c0, "cpu_span_s": t1 - t0}


def scaleout(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Events/s of two workers in one consumer group ÷ one worker, same broker and events."""
    from repricer.infra.kafka_admin import ensure_topics
    from repricer.infra.local.tansu import start_tansu

    n = 20_000 if quick else 150_000
    skus, minutes = (1_000, 5) if quick else (4_000, 10)
    partitions = 4
    repeats = 1 if quick else 2
    topic = f"bench-sclicks-{uuid.uuid4().hex[:6]}"
    cores = os.cpu_count() or 1
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tmpdir("repricer-bench-scaleout-") as tmp:
        broker = start_tansu(tmp / "tansu")
        try:
            ensure_topics(
                bench_settings(tmp, broker.url, "topics", topic_clicks=topic, partitions=4)
            )
            say(progress, f"[bench scaleout] producing {n} clicks over {partitions} partitions")
            produce(broker.bootstrap, topic, click_payloads(n, skus=skus, minutes=minutes))
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
        "machine": machine(),
        "scaleout_events": n,
        "scaleout_partitions": partitions,
        "scaleout_repeats": repeats,
        **median_and_range("scaleout_ratio", ratio),
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
