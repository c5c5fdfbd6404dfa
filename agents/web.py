"""The operator web surface of a worker: ``/metrics``, ``/health``, the dashboard and its JSON API.

Views are Faust pages on the worker's own web server (``REPRICER_WEB_ENABLED``, 127.0.0.1 on
``REPRICER_WEB_PORT``):

* ``GET /metrics`` -- Prometheus text exposition (format 0.0.4) of the worker's counters, sink
  gauges, consumer lag per partition and the LSTM model in use.
* ``GET /health`` -- 200 with a JSON body while healthy; 503 when the worker has stopped
  consuming (no progress for ``health_stall_s`` while lag > 0) or the sink is stuck (rows pending
  and no successful insert for ``health_sink_stall_s``), or an accepted event is unaccounted
  (``Stats.accounting``: the engine's conservation counts per partition).
* ``GET /`` -- one self-contained HTML dashboard (inline SVG + vanilla JS, no external assets)
  that polls the ``/api/...`` endpoints every 2 s.
* ``GET /api/stats``, ``/api/recent-changes``, ``/api/skus``, ``/api/sku/{sku}``,
  ``/api/model-errors``, ``/api/guardrails``, ``/api/dlq`` -- JSON; history comes from
  ClickHouse (always ``FINAL``, parameters escaped by the backend), queried in a thread so the
  event loop never waits on it.

All SQL here runs on ClickHouse 18.16 and on current ClickHouse (chdb): no window functions, no
DateTime64, no aliases that shadow a column inside an aggregate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from faust import web as fweb

from infra.clickhouse import ClickHouseBackend, ClickHouseError, check_ident, connect
from infra.clickhouse.tables import CLICKS_1M, DEAD_LETTERS, FORECASTS, PRICE_CHANGES, SALES_1M
from models.base import ModelInfo

if TYPE_CHECKING:
    from streams.app import Repricer

log = logging.getLogger(__name__)

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4"
MAX_LIMIT = 500


# --------------------------------------------------------------------------- Prometheus text


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Builds a Prometheus text exposition: one HELP/TYPE block per metric family."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lbl = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            self._lines.append(
                f"{name}{{{lbl}}} {_fmt_value(value)}" if lbl else f"{name} {_fmt_value(value)}"
            )

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


# --------------------------------------------------------------------------- worker state


def provider_models(rp: Repricer) -> list[ModelInfo]:
    """What the decider's demand models that run on an execution provider (the ONNX LSTM) say
    about themselves."""
    infos = (m.info() for m in rp.engine.decider.models())
    return [i for i in infos if i.provider is not None]


def consumer_lag(rp: Repricer) -> dict[tuple[str, int], int]:
    """Highwater minus committed offset for every assigned partition of the agents' topics.

    Read from Faust's consumer and the ingest and sink consumers without any broker round trip
    (aiokafka keeps the highwater of each fetched partition; for the ingest and sink consumers
    the position read so far stands in for the committed offset). Partitions whose highwater is not known yet are left out; changelog
    and assignor topics are not counted (they are not consumed after recovery).
    """
    names = {t.get_topic_name() for t in rp.topics.values()}
    out: dict[tuple[str, int], int] = {}
    try:
        consumer = rp.app.consumer
        committed = getattr(consumer, "_committed_offset", {}) or {}
        for tp in consumer.assignment():
            if tp.topic not in names:
                continue
            try:
                hw = consumer.highwater(tp)
            except Exception:
                continue
            if hw is None:
                continue
            pos = committed.get(tp)
            out[(tp.topic, tp.partition)] = max(0, int(hw) - int(pos or 0))
    except Exception as exc:  # consumer not started, rebalancing, ...
        log.debug("consumer lag unavailable: %s", exc)
    for name, c in rp.consumers.items():  # the ingest and sink consumer groups
        try:
            for tp in c.assignment():
                hw = c.highwater(tp)
                state = c._subscription.subscription.assignment.state_value(tp)
                if hw is None or not state.has_valid_position:
                    continue
                out[(tp.topic, tp.partition)] = max(0, int(hw) - int(state.position))
        except Exception as exc:
            log.debug("%s consumer lag unavailable: %s", name, exc)
    return out


@dataclass
class Progress:
    """Remembers when the worker last made progress (any event in or any row out)."""

    signature: tuple[int, ...] = ()
    last_progress_at: float = field(default_factory=time.time)

    def observe(self, rp: Repricer, now: float | None = None) -> None:
        st = rp.stats
        sig = (
            sum(st.ingested.values()),
            st.windows_closed,
            sum(st.sink_rows.values()),
            int(getattr(rp.app.monitor, "events_total", 0) or 0),
        )
        if sig != self.signature:
            self.signature = sig
            self.last_progress_at = time.time() if now is None else now


def health(
    rp: Repricer, progress: Progress, now: float | None = None
) -> tuple[bool, dict[str, Any]]:
    """(healthy, details) of a worker: consuming while there is lag, sink not stuck."""
    now = time.time() if now is None else now
    s, st = rp.settings, rp.stats
    lag = sum(consumer_lag(rp).values())
    idle_s = now - progress.last_progress_at
    consuming = not (lag > 0 and idle_s > s.health_stall_s)
    sink_since = max(st.sink_last_ok_at, st.sink_pending_since)
    sink_stalled_s = now - sink_since if st.sink_pending > 0 else 0.0
    sink_ok = not (st.sink_pending > 0 and sink_stalled_s > s.health_sink_stall_s)
    problems = []
    unaccounted = st.unaccounted()
    if any(unaccounted):
        problems.append(
            f"unaccounted events: {unaccounted[0]} events ({unaccounted[1]} units) accepted but "
            "in no emitted window, open window or dead letter"
        )
    if st.envelopes_lost:
        problems.append(
            f"lost envelopes: {st.envelopes_lost} SKU-topic envelopes were deleted by the broker "
            "before this worker applied them (retention shorter than the downtime)"
        )
    if not consuming:
        problems.append(f"not consuming: no progress for {idle_s:.0f}s with lag {lag}")
    if not sink_ok:
        problems.append(
            f"sink stuck: {st.sink_pending} rows pending, no insert for {sink_stalled_s:.0f}s"
        )
    details = {
        "status": "ok" if not problems else "unhealthy",
        "problems": problems,
        "consumer_lag": lag,
        "seconds_since_progress": round(idle_s, 1),
        "sink_pending": st.sink_pending,
        "sink_errors": st.sink_errors,
        "seconds_since_sink_ok": round(now - st.sink_last_ok_at, 1) if st.sink_last_ok_at else None,
        "events_processed": sum(st.ingested.values()),
        "unaccounted_events": unaccounted[0],
        "unaccounted_units": unaccounted[1],
        "uptime_s": round(now - st.started_at, 1),
    }
    return not problems, details


def _topic_name(rp: Repricer, key: str) -> str:
    topic = rp.topics.get(key)
    return topic.get_topic_name() if topic is not None else key


def metrics_text(rp: Repricer) -> str:
    """The Prometheus exposition of one worker."""
    st = rp.stats
    e = Exposition()
    e.family(
        "repricer_events_total",
        "counter",
        "Events consumed from the public topics, by topic (valid and rejected).",
        [({"topic": _topic_name(rp, k)}, v) for k, v in sorted(st.ingested.items())],
    )
    e.family(
        "repricer_dlq_total",
        "counter",
        "Events sent to the dead-letter topic, by reason.",
        [({"reason": k}, v) for k, v in sorted(st.dlq.items())],
    )
    e.one(
        "repricer_windows_closed_total",
        "counter",
        "Per-SKU windows closed with events (a row each in sales_1m and clicks_1m).",
        st.windows_closed,
    )
    e.one(
        "repricer_quiet_windows_total",
        "counter",
        "Per-SKU windows closed with no event in them (no row is written for them).",
        st.quiet_windows,
    )
    for i, unit in enumerate(("events", "units")):
        rows = []
        for p, a in sorted(st.accounting.items()):
            for where in ("accepted", "emitted", "open", "late", "duplicate", "unaccounted"):
                rows.append(({"partition": str(p), "state": where}, a[where][i]))
        e.family(
            f"repricer_accounted_{unit}",
            "gauge",
            f"Conservation of accepted {unit} per SKU partition at its latest tick: accepted = "
            "emitted + open + late + duplicate; unaccounted must be 0.",
            rows,
        )
    e.one(
        "repricer_offset_rewinds_total",
        "counter",
        "SKU-topic partitions rewound because an envelope was delivered ahead of a missing one.",
        st.offset_rewinds,
    )
    e.one(
        "repricer_envelopes_lost_total",
        "counter",
        "Missing SKU-topic envelopes the broker no longer held (deleted by retention): must be 0.",
        st.envelopes_lost,
    )
    e.one(
        "repricer_decisions_total",
        "counter",
        "Pricing decisions taken at window close.",
        st.decisions,
    )
    e.one("repricer_price_changes_total", "counter", "Price changes published.", st.price_changes)
    e.one(
        "repricer_late_events_total",
        "counter",
        "Events for already closed windows.",
        st.late_events,
    )
    e.family(
        "repricer_model_errors_total",
        "counter",
        "Decider calls that raised at window close, by stage (the tick went on without them).",
        [({"stage": k}, v) for k, v in sorted(st.model_errors.items())],
    )
    e.one(
        "repricer_labels_total", "counter", "Demand labels learned from closed windows.", st.labels
    )
    e.one(
        "repricer_forecast_rows_total",
        "counter",
        "Forecast rows written for evaluation.",
        st.forecast_rows,
    )
    e.family(
        "repricer_sink_rows_total",
        "counter",
        "Rows inserted into ClickHouse, by table.",
        [({"table": k}, v) for k, v in sorted(st.sink_rows.items())],
    )
    e.one(
        "repricer_sink_errors_total",
        "counter",
        "Failed ClickHouse inserts (each retried).",
        st.sink_errors,
    )
    e.one(
        "repricer_sink_batches_total",
        "counter",
        "Successful ClickHouse insert batches.",
        st.sink_batches,
    )
    e.one(
        "repricer_sink_pending_rows",
        "gauge",
        "Rows taken from Kafka and not yet written.",
        st.sink_pending,
    )
    e.one(
        "repricer_sink_last_batch_seconds",
        "gauge",
        "Duration of the last successful insert batch, retries included.",
        st.sink_last_batch_s,
    )
    e.one(
        "repricer_sink_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful insert (0 before the first).",
        st.sink_last_ok_at,
    )
    lag = consumer_lag(rp)
    e.family(
        "repricer_consumer_lag",
        "gauge",
        "Highwater minus committed offset, per assigned partition.",
        [({"topic": t, "partition": str(p)}, v) for (t, p), v in sorted(lag.items())],
    )
    e.one(
        "repricer_consumer_lag_total",
        "gauge",
        "Sum of consumer lag over partitions.",
        sum(lag.values()),
    )
    models = []
    for info in provider_models(rp):
        models.append(
            ({"model": info.name, "provider": str(info.provider), "version": info.version}, 1)
        )
    e.family("repricer_model_info", "gauge", "Demand model loaded, with its ONNX provider.", models)
    e.one(
        "repricer_uptime_seconds",
        "gauge",
        "Seconds since the worker started.",
        time.time() - st.started_at,
    )
    return e.render()


# --------------------------------------------------------------------------- history queries


def _ms(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value


def _num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(row: Iterable[Any]) -> list[Any]:
    out = []
    for v in row:
        if isinstance(v, list):
            out.append([_ms(x) for x in v])
        else:
            out.append(_num(_ms(v)))
    return out


# Columns the API returns as they are stored, under their own names (checked against the
# registry when this module is imported).
_RECENT_CHANGE = PRICE_CHANGES.pick(
    "event_id", "sku", "old_price", "new_price", "currency", "decided_at",
    "window_start", "reasons", "guardrails", "elasticity",
)  # fmt: skip
_SKU_SALES = SALES_1M.pick("window_start", "orders", "units", "revenue", "price")
_SKU_CLICKS = CLICKS_1M.pick("window_start", "views", "add_to_cart", "remove_from_cart")
_SKU_CHANGES = PRICE_CHANGES.pick(
    "window_start", "decided_at", "old_price", "new_price", "event_id"
)
_SKU_FORECASTS = FORECASTS.pick("window_start", "model", "predicted", "actual")


class History:
    """The dashboard's ClickHouse queries; blocking, run them in :attr:`pool`."""

    def __init__(self, url: str, *, window_s: int) -> None:
        self._url = url
        self._backend: ClickHouseBackend | None = None
        self.window_s = window_s
        # one thread: chdb serialises anyway, and the native client holds one connection
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-clickhouse")

    @property
    def db(self) -> str:
        return check_ident(self.ch.database, "database")  # the only unparameterised SQL text

    @property
    def ch(self) -> ClickHouseBackend:
        if self._backend is None:
            # A second backend next to the sink's: a separate server connection, or a second
            # chdb connection to the same path (chdb allows any number of those in a process;
            # the backend's process-wide lock serialises the calls). init() is idempotent and
            # makes the tables exist even before the sink's first insert.
            backend = connect(self._url)
            backend.init()
            self._backend = backend
        return self._backend

    def q(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return [_clean(r) for r in self.ch.query(sql, params)]

    def recent_changes(self, limit: int) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT {', '.join(_RECENT_CHANGE)} FROM {PRICE_CHANGES.at(self.db)} FINAL "
            f"ORDER BY decided_at DESC, window_start DESC, event_id LIMIT %(limit)s",
            {"limit": limit},
        )
        return [dict(zip(_RECENT_CHANGE, r, strict=True)) for r in rows]

    def skus(self, limit: int) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT sku, count() AS n_windows, sum(units) AS total_units, "
            f"max(window_start) AS last_window FROM {SALES_1M.at(self.db)} FINAL "
            f"GROUP BY sku ORDER BY total_units DESC, sku LIMIT %(limit)s",
            {"limit": limit},
        )
        return [{"sku": r[0], "windows": r[1], "units": r[2], "last_window": r[3]} for r in rows]

    def sku(self, sku: str, windows: int) -> dict[str, Any]:
        p = {"sku": sku, "n": windows}
        db = self.db
        sales = self.q(
            f"SELECT {', '.join(_SKU_SALES)} FROM {SALES_1M.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC LIMIT %(n)s",
            p,
        )
        clicks = self.q(
            f"SELECT {', '.join(_SKU_CLICKS)} FROM {CLICKS_1M.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC LIMIT %(n)s",
            p,
        )
        changes = self.q(
            f"SELECT {', '.join(_SKU_CHANGES)} FROM {PRICE_CHANGES.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC, decided_at DESC LIMIT %(n)s",
            p,
        )
        forecasts = self.q(
            f"SELECT {', '.join(_SKU_FORECASTS)} FROM {FORECASTS.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC, model LIMIT %(nf)s",
            {**p, "nf": windows * 8},
        )
        return {
            "sku": sku,
            "window_ms": self.window_s * 1000,
            "sales": [dict(zip(_SKU_SALES, r, strict=True)) for r in reversed(sales)],
            "clicks": [dict(zip(_SKU_CLICKS, r, strict=True)) for r in reversed(clicks)],
            "price_changes": [dict(zip(_SKU_CHANGES, r, strict=True)) for r in reversed(changes)],
            "forecasts": [dict(zip(_SKU_FORECASTS, r, strict=True)) for r in reversed(forecasts)],
        }

    def model_errors(self, bucket_windows: int, buckets: int) -> dict[str, Any]:
        bucket_s = max(1, bucket_windows) * self.window_s
        rows = self.q(
            f"SELECT model, intDiv(toUInt32(window_start), %(bucket)s) * %(bucket)s AS bucket_start, "
            f"avg(abs(predicted - actual)) AS mae, count() AS n "
            f"FROM {FORECASTS.at(self.db)} FINAL "
            f"WHERE predicted = predicted AND actual = actual "
            f"AND toUInt32(window_start) >= "
            f"(SELECT toUInt32(max(window_start)) FROM {FORECASTS.at(self.db)} FINAL) - %(span)s "
            f"GROUP BY model, bucket_start ORDER BY model, bucket_start",
            {"bucket": bucket_s, "span": bucket_s * buckets},
        )
        series: dict[str, list[dict[str, Any]]] = {}
        for model, start, mae, n in rows:
            series.setdefault(model, []).append({"t": int(start) * 1000, "mae": mae, "n": n})
        return {"bucket_windows": bucket_windows, "bucket_ms": bucket_s * 1000, "models": series}

    def guardrails(self) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT arrayJoin(guardrails) AS rule, count() AS n "
            f"FROM {PRICE_CHANGES.at(self.db)} FINAL GROUP BY rule ORDER BY n DESC, rule"
        )
        return [{"rule": r, "n": n} for r, n in rows]

    def dlq(self) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT reason, count() AS n FROM {DEAD_LETTERS.at(self.db)} FINAL "
            f"GROUP BY reason ORDER BY n DESC, reason"
        )
        return [{"reason": r, "n": n} for r, n in rows]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self.pool.shutdown(wait=False)


def dashboard_html() -> str:
    return resources.files("agents").joinpath("dashboard.html").read_text(encoding="utf-8")


def _int_arg(request: Any, name: str, default: int, hi: int = MAX_LIMIT) -> int:
    try:
        return max(1, min(hi, int(request.query.get(name, default))))
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------- registration


def register(rp: Repricer) -> None:
    """Attach the operator pages to ``rp.app``'s web server (served when web is enabled)."""
    app, s = rp.app, rp.settings
    progress = Progress()
    history = History(s.clickhouse_url.get_secret_value(), window_s=s.window_s)
    page_html = dashboard_html()

    async def run(view: fweb.View, fn: Callable[..., Any], *args: Any) -> fweb.Response:
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(loop.run_in_executor(history.pool, fn, *args), 20)
        except (ClickHouseError, OSError, EOFError, TimeoutError) as exc:
            return view.json({"error": f"ClickHouse: {exc}"[:500]}, status=503)
        return view.json(result)

    @app.timer(1.0)
    async def _observe_progress() -> None:
        progress.observe(rp)

    @app.page("/metrics", name="repricer-metrics")
    async def metrics(self: fweb.View, request: fweb.Request) -> fweb.Response:
        return self.text(metrics_text(rp), content_type=CONTENT_TYPE_PROMETHEUS)

    @app.page("/health", name="repricer-health")
    async def health_view(self: fweb.View, request: fweb.Request) -> fweb.Response:
        progress.observe(rp)
        ok, details = health(rp, progress)
        return self.json(details, status=200 if ok else 503)

    @app.page("/", name="repricer-dashboard")
    async def dashboard(self: fweb.View, request: fweb.Request) -> fweb.Response:
        return self.html(page_html)

    @app.page("/api/stats", name="repricer-api-stats")
    async def api_stats(self: fweb.View, request: fweb.Request) -> fweb.Response:
        progress.observe(rp)
        ok, details = health(rp, progress)
        models = [
            {"model": i.name, "provider": i.provider, "version": i.version}
            for i in provider_models(rp)
        ]
        return self.json({**rp.stats.as_dict(), "healthy": ok, "health": details, "models": models})

    @app.page("/api/recent-changes", name="repricer-api-recent-changes")
    async def api_recent(self: fweb.View, request: fweb.Request) -> fweb.Response:
        return await run(self, history.recent_changes, _int_arg(request, "limit", 20))

    @app.page("/api/skus", name="repricer-api-skus")
    async def api_skus(self: fweb.View, request: fweb.Request) -> fweb.Response:
        return await run(self, history.skus, _int_arg(request, "limit", 200))

    @app.page("/api/sku/{sku}", name="repricer-api-sku")
    async def api_sku(self: fweb.View, request: fweb.Request, sku: str) -> fweb.Response:
        return await run(self, history.sku, sku, _int_arg(request, "windows", 240, 5000))

    @app.page("/api/model-errors", name="repricer-api-model-errors")
    async def api_model_errors(self: fweb.View, request: fweb.Request) -> fweb.Response:
        return await run(
            self,
            history.model_errors,
            _int_arg(request, "bucket_windows", 10, 1440),
            _int_arg(request, "buckets", 60),
        )

    @app.page("/api/guardrails", name="repricer-api-guardrails")
    async def api_guardrails(self: fweb.View, request: fweb.Request) -> fweb.Response:
        return await run(self, history.guardrails)

    @app.page("/api/dlq", name="repricer-api-dlq")
    async def api_dlq(self: fweb.View, request: fweb.Request) -> fweb.Response:
        loop = asyncio.get_running_loop()
        live = dict(rp.stats.dlq)
        try:
            stored = await asyncio.wait_for(loop.run_in_executor(history.pool, history.dlq), 20)
        except (ClickHouseError, OSError, EOFError, TimeoutError) as exc:
            return self.json({"live": live, "stored": [], "error": str(exc)[:500]}, status=503)
        return self.json({"live": live, "stored": stored})
