"""Settings: env prefix, validation, and secrets never shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from repricer.streams.settings import Settings
from repricer.streams.tools.runner import settings_env


def test_env_prefix_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPRICER_WINDOW_S", "30")
    monkeypatch.setenv("REPRICER_BROKER", "127.0.0.1:9999")
    s = Settings()
    assert s.window_ms == 30_000
    assert s.broker == "kafka://127.0.0.1:9999" and s.bootstrap == "127.0.0.1:9999"


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(max_step=0)
    with pytest.raises(ValidationError):
        Settings(rounding="banker")


def test_secrets_are_masked() -> None:
    s = Settings(clickhouse_url="clickhouse://app:hunter2@db:9000/x", kafka_password="s3cr3t")
    for text in (repr(s), str(s), f"{s}"):
        assert "hunter2" not in text and "s3cr3t" not in text
    assert "app:***@db" in repr(s)


def test_settings_round_trip_through_env(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(window_s=15, web_enabled=True, clickhouse_url="chdb:///tmp/x", partitions=3)
    for k, v in settings_env(s).items():
        monkeypatch.setenv(k, v)
    assert Settings() == s
