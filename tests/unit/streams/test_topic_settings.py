"""Replication factor, ``min.insync.replicas`` and the web host are settings that reach the
topics and the web server a worker creates (default: what a single broker holds, 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from repricer.infra.kafka_admin import topic_config
from repricer.streams.app import create_app
from repricer.streams.settings import Settings


def test_defaults_fit_a_single_broker_and_localhost() -> None:
    s = Settings()
    assert (s.topic_replication_factor, s.topic_min_insync_replicas) == (1, 1)
    assert s.web_host == "127.0.0.1"
    assert topic_config(s, compact=True) == {
        "cleanup.policy": "compact",
        "min.insync.replicas": "1",
    }


def test_min_insync_cannot_exceed_the_replicas() -> None:
    with pytest.raises(ValidationError, match="min_insync"):
        Settings(topic_replication_factor=2, topic_min_insync_replicas=3)


def test_the_worker_creates_its_topics_and_server_from_the_settings(tmp_path: Path) -> None:
    s = Settings(
        data_dir=str(tmp_path / "faust"),
        topic_replication_factor=3,
        topic_min_insync_replicas=2,
        web_host="0.0.0.0",
        web_port=6070,
    )
    rp = create_app(s)
    conf = rp.app.conf
    assert conf.topic_replication_factor == 3
    assert (conf.web_host, conf.web_port) == ("0.0.0.0", 6070)
    assert rp.topics["sku_events"].config == {
        "cleanup.policy": "delete",
        "min.insync.replicas": "2",
    }
    for table in rp.tables.values():
        assert table.extra_topic_configs == {"min.insync.replicas": "2"}
