"""The window engine: per-SKU event-time windows and the decision at window close.

``engine.py`` (``WindowEngine.handle``) dispatches each envelope to the step that owns it; see
its docstring for the map of the package.
"""

from repricer.streams.engine.clock import advance_idle_sources
from repricer.streams.engine.engine import WindowEngine
from repricer.streams.engine.outputs import Outputs, decision_id
from repricer.streams.engine.state import Accounting, OpenWindows, PartitionState, SkuState

__all__ = [
    "Accounting",
    "OpenWindows",
    "Outputs",
    "PartitionState",
    "SkuState",
    "WindowEngine",
    "advance_idle_sources",
    "decision_id",
]
