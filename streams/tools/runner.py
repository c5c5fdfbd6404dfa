"""Run a worker as a child process and watch its stats: used by ``demo``, tests and benches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from repricer.infra.local.process import terminate
from repricer.streams.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """``REPRICER_*`` environment variables that reproduce ``settings`` in a child process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"REPRICER_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


class WorkerProcess:
    """A ``repricer worker`` child process with its log file and stats file."""

    def __init__(self, settings: Settings, log_path: Path, *, loglevel: str = "info") -> None:
        self.settings = settings
        self.log_path = log_path
        self.loglevel = loglevel
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def stats_path(self) -> Path:
        return Path(self.settings.data_dir) / "stats.json"

    def start(self) -> WorkerProcess:
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "repricer.streams.cli",
                    "worker",
                    "--loglevel",
                    self.loglevel,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def stats(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stats_path.read_text()))
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(
        self, pred: Callable[[dict[str, Any]], bool], *, timeout: float, stable_s: float = 0.0
    ) -> dict[str, Any]:
        """Wait until ``pred(stats)`` holds (for ``stable_s`` seconds); raise on timeout or death."""
        deadline = time.monotonic() + timeout
        since: float | None = None
        while True:
            st = self.stats()
            if st and pred(st):
                since = since or time.monotonic()
                if time.monotonic() - since >= stable_s:
                    return st
            else:
                since = None
            if not self.alive():
                raise RuntimeError(f"worker exited; see {self.log_path}:\n{self.tail_log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker condition not met in {timeout}s; last stats {st}")
            time.sleep(0.25)

    def tail_log(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        terminate(proc, timeout)

    def kill(self) -> None:
        """kill -9: the crash case."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)


def drained(expected_events: int) -> Callable[[dict[str, Any]], bool]:
    """Stats predicate: every sent event ingested and every produced row written to ClickHouse."""

    def pred(st: dict[str, Any]) -> bool:
        rows = st.get("sink_rows", {})
        return (
            st.get("events_processed", 0) >= expected_events
            and rows.get("sales_1m", 0) >= st.get("windows_closed", 0)
            and rows.get("clicks_1m", 0) >= st.get("windows_closed", 0)
            and rows.get("price_changes", 0) >= st.get("price_changes", 0)
            and rows.get("forecasts", 0) >= st.get("forecast_rows", 0)
            and rows.get("dead_letters", 0) >= sum(st.get("dlq", {}).values())
            and st.get("sink_pending", 0) == 0
        )

    return pred


def closed_out(partitions: int, events: int) -> Callable[[dict[str, Any]], bool]:
    """Stats predicate for the end of a bounded input (after its end-of-input markers): every
    SKU partition has ticked with nothing left open, and together they accepted ``events``."""

    def pred(st: dict[str, Any]) -> bool:
        acct = st.get("accounting", {})
        return (
            len(acct) == partitions
            and all(a["open"] == [0, 0] for a in acct.values())
            and sum(a["accepted"][0] for a in acct.values()) >= events
        )

    return pred
