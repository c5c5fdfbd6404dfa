"""The side-input bootstrap's cap stays inside the health check's stall window."""

from __future__ import annotations

import pytest

from repricer.streams.settings import Settings
from repricer.streams.side_inputs import BOOTSTRAP_TIMEOUT_S, bootstrap_timeout


@pytest.mark.parametrize("stall_s", [0.5, 10.0, 60.0, 119.0, 120.0, 600.0])
def test_events_resume_before_the_worker_could_be_called_stalled(stall_s: float) -> None:
    cap = bootstrap_timeout(stall_s)
    assert 0 < cap <= stall_s / 2
    assert cap <= BOOTSTRAP_TIMEOUT_S


def test_default_settings_give_a_cap_shorter_than_the_stall_window() -> None:
    s = Settings()
    assert bootstrap_timeout(s.health_stall_s) < s.health_stall_s
    # a long stall window does not make the events wait longer than the fixed cap
    assert bootstrap_timeout(10 * BOOTSTRAP_TIMEOUT_S) == BOOTSTRAP_TIMEOUT_S
