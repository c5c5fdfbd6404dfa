"""The compose stack is operable as written: whatever names a service and a port (Prometheus'
scrape targets, Grafana's data sources) names a service that exists and a port it serves; every
command a repricer container runs is one the CLI has; the alert rules and the operations
dashboard query metrics a worker really exports; nothing is published beyond 127.0.0.1; topic
replication asks no more than the compose cluster's brokers hold. No Docker engine is needed:
the files are read as data (their validity against the Compose spec is tests/unit/project/test_compose.py).
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from repricer.streams.cli import build_parser
from tests.integration.promtext import parse_prometheus
from tests.unit.streams.test_metric_names import exposition

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((ROOT / "infra" / "prometheus-config" / "prometheus.yml").read_text())
ALERTS = yaml.safe_load((ROOT / "infra" / "prometheus-config" / "alerts.yml").read_text())
GRAFANA = ROOT / "infra" / "grafana" / "provisioning"
OPERATIONS = json.loads((GRAFANA / "dashboards" / "operations.json").read_text())
HEALTHCHECK = ROOT / "infra" / "docker" / "healthcheck.py"


def served_ports(name: str) -> set[int]:
    """Ports a service listens on: declared (`expose`, the container side of `ports`), and for
    a repricer container with its web server on, REPRICER_WEB_PORT on a non-loopback host."""
    svc = SERVICES[name]
    ports = {int(p) for p in svc.get("expose", [])}
    ports |= {int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])}
    env = svc.get("environment", {})
    if env.get("REPRICER_WEB_ENABLED") == "true" and env.get("REPRICER_WEB_HOST") == "0.0.0.0":
        ports.add(int(env["REPRICER_WEB_PORT"]))
    return ports


def repricer_services() -> Iterator[tuple[str, dict[str, Any]]]:
    return ((n, s) for n, s in SERVICES.items() if s.get("image") == "repricer:local")


def test_every_scrape_target_is_a_service_serving_that_port() -> None:
    targets = [
        t
        for job in PROMETHEUS["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    ]
    workers = {n for n, s in repricer_services() if s["command"] == ["worker"]}
    assert workers == {"worker-1", "worker-2"}
    assert workers <= {t.split(":")[0] for t in targets}  # every worker is scraped
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in SERVICES, target
        assert int(port) in served_ports(host), (target, served_ports(host))
    assert ALERTS["groups"] and "/etc/prometheus/alerts.yml" in PROMETHEUS["rule_files"]
    mounts = dict(v.split(":")[:2] for v in SERVICES["prometheus"]["volumes"] if ":" in v)
    assert mounts["./infra/prometheus-config"] == "/etc/prometheus"


def test_every_grafana_data_source_is_a_service_serving_that_port() -> None:
    seen = {}
    for path in sorted((GRAFANA / "datasources").glob("*.yml")):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            if ds["type"] == "prometheus":
                url = urlsplit(ds["url"])
                host, port = url.hostname, url.port
            else:
                host, port = ds["jsonData"]["host"], ds["jsonData"]["port"]
            assert host in SERVICES, (ds["name"], host)
            assert int(port) in served_ports(host), (ds["name"], host, port)
            seen[ds["type"]] = ds["uid"]
    assert seen == {
        "grafana-clickhouse-datasource": "repricer-clickhouse",
        "prometheus": "repricer-prometheus",
    }


def test_every_repricer_command_is_one_the_cli_has() -> None:
    parser = build_parser()
    commands = {}
    for name, svc in repricer_services():
        try:
            args = parser.parse_args(svc["command"])
        except SystemExit as exc:
            pytest.fail(f"{name}: {svc['command']} does not parse (exit {exc.code})")
        commands[name] = args.command
    assert set(commands.values()) == {"init", "worker", "simulate"}
    for name in ("worker-1", "worker-2"):
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "/app/infra/docker/healthcheck.py"], test
        port = int(test[3])
        assert port == int(SERVICES[name]["environment"]["REPRICER_WEB_PORT"])
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile and "COPY infra ./infra" in dockerfile


def _metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b((?:repricer|process)_[a-z0-9_]+)", expr)}


EXPORTED = parse_prometheus(exposition())


def _exported(name: str) -> bool:
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return name in EXPORTED or (base in EXPORTED and EXPORTED[base].type == "histogram")


def test_alert_rules_and_the_operations_dashboard_query_exported_metrics() -> None:
    exprs = [r["expr"] for g in ALERTS["groups"] for r in g["rules"]]
    exprs += [t["expr"] for p in OPERATIONS["panels"] for t in p["targets"]]
    names = set().union(*(_metric_names(e) for e in exprs))
    assert len(names) >= 12
    missing = sorted(n for n in names if not _exported(n))
    assert not missing, missing
    alerts = {r["alert"]: r for g in ALERTS["groups"] for r in g["rules"]}
    assert "repricer_sink_stuck" in alerts["RepricerSinkStuck"]["expr"]


def test_the_operations_dashboard_shows_what_operators_ask_for() -> None:
    assert (
        OPERATIONS["uid"]
        != json.loads((GRAFANA / "dashboards" / "repricer.json").read_text())["uid"]
    )
    refs = [p["datasource"] for p in OPERATIONS["panels"]]
    refs += [t["datasource"] for p in OPERATIONS["panels"] for t in p["targets"]]
    assert all(r == {"type": "prometheus", "uid": "repricer-prometheus"} for r in refs)
    text = json.dumps(OPERATIONS["panels"])
    for metric in (
        "repricer_consumer_lag_messages",
        "repricer_event_time_lag_seconds",
        "repricer_tick_duration_seconds_bucket",
        "repricer_sink_pending_rows",
        "repricer_dlq_total",
        "repricer_model_errors_total",
    ):
        assert metric in text, metric
    ids = [p["id"] for p in OPERATIONS["panels"]]
    assert len(ids) == len(set(ids))


def test_nothing_is_published_beyond_loopback_and_data_has_volumes() -> None:
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    for name in ("kafka", "clickhouse"):
        assert SERVICES[name].get("ports"), f"{name} must be reachable from the host"
    named = set(COMPOSE["volumes"])
    for name, path in (
        ("kafka", "/var/lib/kafka/data"),
        ("clickhouse", "/var/lib/clickhouse"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
        ("worker-1", "/data"),
        ("worker-2", "/data"),
    ):
        sources = [v.split(":")[0] for v in SERVICES[name]["volumes"] if v.split(":")[1] == path]
        assert len(sources) == 1 and sources[0] in named, (name, path, sources)


def test_topic_replication_fits_the_compose_cluster() -> None:
    brokers = [s for s in SERVICES.values() if str(s.get("image", "")).startswith("apache/kafka")]
    env = COMPOSE["x-repricer"]["environment"]
    rf, isr = (
        int(env["REPRICER_TOPIC_REPLICATION_FACTOR"]),
        int(env["REPRICER_TOPIC_MIN_INSYNC_REPLICAS"]),
    )
    assert 1 <= isr <= rf <= len(brokers)
    kafka = brokers[0]["environment"]
    assert int(kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) <= len(brokers)


class _Probe(http.server.BaseHTTPRequestHandler):
    answers: dict[str, int] = {}

    def do_GET(self) -> None:
        self.send_response(self.answers.get(self.path, 404))
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def probe_server() -> Iterator[tuple[int, dict[str, int]]]:
    answers: dict[str, int] = {}
    handler = type("Probe", (_Probe,), {"answers": answers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], answers
    finally:
        server.shutdown()
        server.server_close()


def test_the_container_healthcheck_reads_livez_then_readyz(
    probe_server: tuple[int, dict[str, int]],
) -> None:
    port, answers = probe_server
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        env = {"REPRICER_HEALTHCHECK_PID": str(victim.pid), "PATH": "/usr/bin:/bin"}

        def check() -> int:
            cmd = [sys.executable, str(HEALTHCHECK), str(port)]
            return subprocess.run(cmd, env=env, capture_output=True, timeout=30).returncode

        answers.update({"/livez": 404, "/readyz": 404})  # not serving yet: unhealthy only
        assert check() == 1 and victim.poll() is None
        answers.update({"/livez": 200, "/readyz": 503})
        assert check() == 1 and victim.poll() is None  # live, not ready: unhealthy, not killed
        answers["/readyz"] = 200
        assert check() == 0
        answers["/livez"] = 503  # dead: the worker is told to stop (its restart policy restarts)
        assert check() == 1
        assert victim.wait(timeout=10) == -15
    finally:
        victim.kill()
        victim.wait()
