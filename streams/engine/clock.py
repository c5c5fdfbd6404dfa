"""Event time: windows, the partition watermark and the boundary before which windows are closed.

A window ``[s, s+W)`` closes when the partition watermark (the event time every source partition
has forwarded up to) minus the allowed lateness reaches ``s+W``.
"""

from __future__ import annotations

from dataclasses import dataclass

from repricer.streams.engine.state import PartitionState


@dataclass(frozen=True, slots=True)
class Clock:
    window_ms: int
    lateness_ms: int

    def window_of(self, ts: int) -> int:
        """Start of the window ``ts`` falls in."""
        return ts - ts % self.window_ms

    def boundary(self, watermark: int | None) -> int | None:
        """Windows starting before this are closed."""
        if watermark is None:
            return None
        return self.window_of(watermark - self.lateness_ms)

    def advance(self, pm: PartitionState, src: str, ts: int) -> None:
        """Record that ``src`` forwarded events up to ``ts``; a boundary that moves on starts a
        tick (``pm.closing``, cleared only when the tick finished, so a tick cut short by a crash
        is completed by the replay or the next watermark)."""
        if ts <= pm.sources.get(src, -1):
            return
        pm.sources[src] = ts
        low = watermark(pm.sources)
        if low is not None and (pm.watermark is None or low > pm.watermark):
            pm.watermark = low
            b = self.boundary(low)
            if b is not None and (pm.boundary is None or b > pm.boundary):
                pm.boundary = b
                pm.closing = True


def watermark(srcs: dict[str, int]) -> int | None:
    """Event time up to which every source partition has forwarded its events (the minimum).

    Every source partition assigned to an ingest agent is announced (with 0 until it forwards
    something), so windows never close on a subset of sources. Idle ones do not hold this back
    forever: ingest advances a caught-up, quiet source to its frontier
    (``repricer.streams.source_watermarks.advance_idle_sources``).
    """
    low = min(srcs.values()) if srcs else 0
    return low if low > 0 else None  # a known source that forwarded nothing yet holds all
