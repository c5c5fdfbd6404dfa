"""The ingest bench's sides on the real broker: the Quix Streams count-only app reads every record
of the topic from Tansu, and the Faust count-only agent and the worker run on the loop the
settings name (REPRICER_EVENT_LOOP), which the worker's stats report."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.local.tansu import TansuBroker
from repricer.streams.tools.bench.common import bench_settings, click_payloads, produce
from repricer.streams.tools.bench.ingest import (
    _run_faust_count,
    _run_pipeline_ingest,
    _run_quix_count,
)

pytestmark = pytest.mark.integration
N = 500


def _topic(broker: TansuBroker, tmp_path: Path) -> str:
    topic = f"bench-clicks-{uuid.uuid4().hex[:6]}"
    ensure_topics(bench_settings(tmp_path, broker.url, "topics", topic_clicks=topic))
    produce(broker.bootstrap, topic, click_payloads(N))
    return topic


def test_quix_count_only_app_reads_every_record_from_tansu(
    broker: TansuBroker, tmp_path: Path
) -> None:
    topic = _topic(broker, tmp_path)
    out = _run_quix_count(tmp_path, broker.bootstrap, topic, N, 0)
    assert out["n"] == N
    assert out["elapsed_s"] > 0


@pytest.mark.parametrize(("setting", "loop"), [("uvloop", "uvloop."), ("asyncio", "asyncio.")])
def test_faust_count_only_agent_runs_on_the_configured_loop(
    broker: TansuBroker, tmp_path: Path, setting: str, loop: str
) -> None:
    topic = _topic(broker, tmp_path)
    out = _run_faust_count(tmp_path, broker.url, topic, N, 0, setting)
    assert out["n"] == N
    assert str(out["loop"]).startswith(loop), out["loop"]


@pytest.mark.parametrize(("setting", "loop"), [("uvloop", "uvloop."), ("asyncio", "asyncio.")])
def test_worker_runs_on_the_configured_loop_and_reports_it(
    broker: TansuBroker, tmp_path: Path, setting: str, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPRICER_EVENT_LOOP", setting)
    topic = _topic(broker, tmp_path)
    rate, running = _run_pipeline_ingest(tmp_path, broker.url, topic, N, 0)
    assert running.startswith(loop), running
    assert rate > 0
