"""The operator web surface of a worker: ``/metrics``, the probes, the dashboard and its JSON API.

Views are Faust pages on the worker's own web server (``REPRICER_WEB_ENABLED``, bound to
``REPRICER_WEB_HOST``, 127.0.0.1 by default, on ``REPRICER_WEB_PORT``):

* ``GET /metrics`` -- Prometheus text exposition (format 0.0.4, by ``prometheus_client``) of the
  worker's counters, sink gauges, consumer and event-time lag per partition, the histograms of
  ``streams.telemetry``, Faust's sensor numbers and the process.
* ``GET /livez`` -- 200 while the event loop and the worker's agents run, else 503: the
  liveness probe (``streams.probes``). A ClickHouse outage does not fail it.
* ``GET /readyz`` -- 200 once live, state recovered and consumer groups joined, else 503: the
  readiness probe (``streams.probes``).
* ``GET /health`` -- the overall status for a person or a dashboard, not a probe: 200 with a
  JSON body while healthy; 503 when the worker has stopped consuming (no progress for
  ``health_stall_s`` while lag > 0) or the sink is stuck (rows pending and no successful insert
  for ``health_sink_stall_s``), or an accepted event is unaccounted (``Stats.accounting``).
* ``GET /`` -- one self-contained HTML dashboard (inline SVG + vanilla JS, no external assets)
  that polls the ``/api/...`` endpoints every 2 s.
* ``GET /api/stats``, ``/api/recent-changes``, ``/api/skus``, ``/api/sku/{sku}``,
  ``/api/model-errors``, ``/api/guardrails``, ``/api/dlq``, ``/api/uplift[?since=TIME&until=TIME]`` -- JSON; history comes from
  ClickHouse (always ``FINAL``, parameters escaped by the backend), queried in a thread so the
  event loop never waits on it. ``/api/uplift`` is ``repricer report --uplift``'s estimate for
  the worker's holdout settings; ``since`` (ISO 8601 or epoch seconds) defaults to the policy's
  first live decision (its first ``price_changes`` row issued by ``policy``), ``until`` to now.

What the pages say lives below the agents: the metrics and health in ``streams.metrics`` (the
text format in ``infra.prometheus``), the ClickHouse queries in ``streams.queries.History``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from faust import web as fweb

from repricer.infra.clickhouse import ClickHouseError
from repricer.infra.prometheus import CONTENT_TYPE_PROMETHEUS
from repricer.streams.build import holdout
from repricer.streams.going_live import parse_time
from repricer.streams.metrics import Progress, health, metrics_text, provider_models
from repricer.streams.probes import Heartbeat, liveness, readiness
from repricer.streams.queries import History

if TYPE_CHECKING:
    from repricer.streams.worker import Repricer

log = logging.getLogger(__name__)

MAX_LIMIT = 500


def dashboard_html() -> str:
    return resources.files("repricer.agents").joinpath("dashboard.html").read_text(encoding="utf-8")


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
    heartbeat = Heartbeat()
    history = History(s.clickhouse_url.get_secret_value(), window_s=s.window_s)
    page_html = dashboard_html()
    holds = holdout(s).holds

    async def run(view: fweb.View, fn: Callable[..., Any], *args: Any) -> fweb.Response:
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(loop.run_in_executor(history.pool, fn, *args), 20)
        except (ClickHouseError, OSError, EOFError, TimeoutError) as exc:
            return view.json({"error": f"ClickHouse: {exc}"[:500]}, status=503)
        return view.json(result)

    @app.timer(1.0)
    async def _observe_progress() -> None:
        heartbeat.beat()
        progress.observe(rp)

    @app.page("/metrics", name="repricer-metrics")
    async def metrics(self: fweb.View, request: fweb.Request) -> fweb.Response:
        return self.text(metrics_text(rp, progress), content_type=CONTENT_TYPE_PROMETHEUS)

    @app.page("/livez", name="repricer-livez")
    async def livez(self: fweb.View, request: fweb.Request) -> fweb.Response:
        ok, details = liveness(rp, heartbeat)
        return self.json(details, status=200 if ok else 503)

    @app.page("/readyz", name="repricer-readyz")
    async def readyz(self: fweb.View, request: fweb.Request) -> fweb.Response:
        ok, details = readiness(rp, heartbeat)
        return self.json(details, status=200 if ok else 503)

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

    @app.page("/api/uplift", name="repricer-api-uplift")
    async def api_uplift(self: fweb.View, request: fweb.Request) -> fweb.Response:
        times = {}
        for name in ("since", "until"):
            text = request.query.get(name) or ""
            try:
                times[name] = parse_time(text) if text else None
            except ValueError:
                return self.json({"error": f"{name}: not a time: {text[:50]!r}"}, status=400)
        return await run(self, history.uplift, holds, times["since"], times["until"])

    @app.page("/api/dlq", name="repricer-api-dlq")
    async def api_dlq(self: fweb.View, request: fweb.Request) -> fweb.Response:
        loop = asyncio.get_running_loop()
        live = dict(rp.stats.dlq)
        try:
            stored = await asyncio.wait_for(loop.run_in_executor(history.pool, history.dlq), 20)
        except (ClickHouseError, OSError, EOFError, TimeoutError) as exc:
            return self.json({"live": live, "stored": [], "error": str(exc)[:500]}, status=503)
        return self.json({"live": live, "stored": stored})
