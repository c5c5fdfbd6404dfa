"""The producer flush is a barrier for every changelog write (streams/durable.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from repricer.streams.durable import PRUNE_AT, AckedTable, make_flush_durable


def _table(monkeypatch: pytest.MonkeyPatch) -> tuple[AckedTable, list[asyncio.Future[Any]]]:
    """An AckedTable whose Faust changelog send hands out futures the test resolves."""
    sent: list[asyncio.Future[Any]] = []

    def send_changelog(self: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sent.append(fut)
        return fut

    monkeypatch.setattr(faust.Table, "send_changelog", send_changelog)
    return AckedTable.__new__(AckedTable), sent


def _app(log: list[str]) -> Any:
    async def buffered_flush() -> None:  # Faust's own flush: may return before the acks
        log.append("buffer flushed")

    return SimpleNamespace(producer=SimpleNamespace(flush=buffered_flush))


def test_flush_returns_only_after_every_changelog_write_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        table, sent = _table(monkeypatch)
        log: list[str] = []
        app = _app(log)
        make_flush_durable(app, [table])
        for i in range(3):
            table.send_changelog(0, f"k{i}", i)
        flush = asyncio.ensure_future(app.producer.flush())
        await asyncio.sleep(0.05)
        assert log == ["buffer flushed"] and not flush.done(), "flushed before the acks"
        assert table.unacked() == 3
        sent[0].set_result(None)
        sent[1].set_result(None)
        table.send_changelog(0, "late", 9)  # a write while flushing is waited for as well
        await asyncio.sleep(0.05)
        assert not flush.done()
        sent[2].set_result(None)
        await asyncio.sleep(0.05)
        assert not flush.done()
        sent[3].set_result(None)
        await asyncio.wait_for(flush, 1)
        assert table.unacked() == 0

    asyncio.run(run())


def test_a_failed_changelog_write_fails_the_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """So Faust's commit after the flush never happens: the envelope is processed again."""

    async def run() -> None:
        table, sent = _table(monkeypatch)
        app = _app([])
        make_flush_durable(app, [table])
        table.send_changelog(0, "k", 1)
        sent[0].set_exception(RuntimeError("broker said no"))
        with pytest.raises(RuntimeError, match="broker said no"):
            await app.producer.flush()

    asyncio.run(run())


def test_acknowledged_writes_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        table, sent = _table(monkeypatch)
        for i in range(PRUNE_AT + 10):
            table.send_changelog(0, f"k{i}", i)
            if i < PRUNE_AT - 1:
                sent[-1].set_result(None)
        assert len(table.__dict__["_unacked"]) <= 12  # pruned, the pending ones kept
        assert table.unacked() == 11

    asyncio.run(run())


def test_pruning_stays_linear_while_nothing_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tick sends tens of thousands of records before the first ack: each write must not
    rescan the whole list (it did: a 4k-SKU tick spent 85% of the worker's time there)."""
    import repricer.streams.durable as durable

    calls = {"n": 0}
    acked = durable._acked

    def counting(f: Any) -> bool:
        calls["n"] += 1
        return acked(f)

    monkeypatch.setattr(durable, "_acked", counting)
    monkeypatch.setattr(durable, "PRUNE_AT", 64)

    async def run() -> None:
        table, _ = _table(monkeypatch)
        n = 20 * 64
        for i in range(n):
            table.send_changelog(0, f"k{i}", i)
        assert calls["n"] <= 4 * n, calls["n"]  # amortised O(1) per write
        assert table.unacked() == n

    asyncio.run(run())
