"""The dashboard in a real headless Chromium, driven over the DevTools protocol.

A worker runs with its web server on; the page is opened once and never reloaded. The test waits
until the price chart has points and the changes table has rows, then sends events for two new
SKUs: their first price changes must show up in the open page (fresh rows, by event id) through
its 2-second polling. A screenshot goes to ``tests/artifacts/dashboard.png``.

Chromium is Debian's ``chromium`` package (``make deps`` installs it); the protocol client is
aiohttp's websocket client (aiohttp comes with Faust), so no browser download and no new package.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import WebWorker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1400,1000",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)

PAGE_STATE = """!document.querySelector("#price-chart") ? '{"polls": 0}' : JSON.stringify({
  marker: window.__marker || null,
  polls: window.__dash ? window.__dash.polls : 0,
  sku: window.__dash ? window.__dash.sku : null,
  price: +document.querySelector('#price-chart').dataset.points,
  demand: +document.querySelector('#demand-chart').dataset.points,
  errors: +document.querySelector('#error-chart').dataset.points,
  rows: [...document.querySelectorAll('#changes tr[data-event-id]')].map(
    r => [r.dataset.eventId, r.dataset.sku, r.classList.contains('fresh')]),
  kpis: document.querySelector('#kpis').innerText,
  health: document.querySelector('#health').textContent,
  uplift: document.querySelector('#uplift').innerText,
})"""


def find_chromium() -> str:
    for name in (os.environ.get("REPRICER_CHROMIUM", ""), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    pytest.fail("chromium not found: run `make deps` (Debian package `chromium`)", pytrace=False)


class Chromium:
    """A headless Chromium child process with a DevTools endpoint on a loopback port."""

    def __init__(self, profile: Path, log: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def devtools_port(self, timeout: float = 30) -> int:
        """Chromium writes the port it picked to ``DevToolsActivePort`` in the profile."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            try:
                return int(marker.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


class DevTools:
    """Minimal Chrome DevTools protocol client over one page target's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"devtools connection closed: {msg}")
            data = json.loads(msg.data)
            if data.get("id") == my_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return dict(data.get("result", {}))
            self.events.append(data)

    async def evaluate(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page error: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def state(self) -> dict[str, Any]:
        return dict(json.loads(await self.evaluate(PAGE_STATE)))

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = await self.state()
            if pred(st):
                return st
            await asyncio.sleep(0.3)
        raise TimeoutError(f"page never showed {what}; last state {st}")

    def page_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"]


async def drive(ww: WebWorker, chrome: Chromium, shot: Path) -> dict[str, Any]:
    port = await asyncio.to_thread(chrome.devtools_port)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = DevTools(ws)
            await cdp.call("Runtime.enable")
            await cdp.call("Page.enable")
            await cdp.call(
                "Emulation.setDeviceMetricsOverride",
                width=1400,
                height=1000,
                deviceScaleFactor=1,
                mobile=False,
            )
            await cdp.call("Page.navigate", url=ww.base_url + "/#sku=A")
            await cdp.wait_for(lambda s: s.get("polls", 0) >= 1, "a first poll", 30)
            await cdp.evaluate("window.__marker = 'same page'; 1")
            first = await cdp.wait_for(
                lambda s: s["price"] > 0 and s["demand"] > 0 and s["rows"],
                "price points and recent changes",
            )
            assert first["sku"] == "A"
            seen = {r[0] for r in first["rows"]}

            # new SKUs arrive while the page is open: their first changes must appear live
            before = ww.worker.stats()["price_changes"]
            await asyncio.to_thread(send_phase_two, ww)
            await asyncio.to_thread(
                ww.worker.wait_until,
                lambda st: (
                    st.get("price_changes", 0) > before
                    and st.get("sink_rows", {}).get("price_changes", 0) >= st["price_changes"]
                    and st.get("sink_rows", {}).get("forecasts", 0) > 0
                ),
                timeout=90,
            )
            new_ids = {c["event_id"] for c in ww.json("/api/recent-changes?limit=15")} - seen
            assert new_ids, "the worker published new changes"
            live = await cdp.wait_for(
                lambda s: any(r[0] in new_ids and r[2] for r in s["rows"]),
                "a new price change row (live)",
            )
            live = await cdp.wait_for(lambda s: s["errors"] > 0, "model error points", timeout=30)
            assert live["marker"] == "same page", "the page was never reloaded"
            assert "healthy" in live["health"]
            # 3 SKUs, no holdout: the uplift panel says so plainly
            await cdp.wait_for(lambda s: "not enough data" in s["uplift"], "the uplift panel")

            height = await cdp.evaluate("document.documentElement.scrollHeight")
            await cdp.call(
                "Emulation.setDeviceMetricsOverride",
                width=1400,
                height=int(height),
                deviceScaleFactor=1,
                mobile=False,
            )
            await asyncio.sleep(0.3)
            png = await cdp.call("Page.captureScreenshot", format="png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(base64.b64decode(png["data"]))
            assert not cdp.page_errors(), cdp.page_errors()
            return live


def send_phase_two(ww: WebWorker) -> None:
    ww.catalog(["D", "E"])
    ww.windows(["A", "B", "C", "D", "E"], 4, 6)
    ww.tick(8)


def test_dashboard_updates_live_in_chromium(
    web_worker_factory: Callable[[str], WebWorker], tmp_path: Path
) -> None:
    ww = web_worker_factory(f"chdb://{tmp_path / 'chdb'}")
    ww.catalog(["A", "B", "C"])
    ww.windows(["A", "B", "C"], 0, 2)
    ww.tick(4)
    ww.wait_processed()
    ww.worker.wait_until(
        lambda st: (
            st.get("windows_closed", 0) >= 9
            and st.get("price_changes", 0) > 0
            and st.get("sink_rows", {}).get("price_changes", 0) >= st["price_changes"]
            and st.get("sink_rows", {}).get("sales_1m", 0) >= 9
        ),
        timeout=90,
    )
    chrome = Chromium(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    shot = ARTIFACTS / "dashboard.png"
    try:
        live = asyncio.run(asyncio.wait_for(drive(ww, chrome, shot), 240))
    finally:
        chrome.stop()
    assert live["price"] > 0 and live["demand"] > 0 and live["errors"] > 0
    assert shot.stat().st_size > 10_000
    assert "Traceback" not in ww.worker.tail_log(200_000), ww.worker.tail_log()
