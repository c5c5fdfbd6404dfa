"""Learning at a tick: the shared (pooled) model once per tick, then each SKU's own labels.

A model never stops windows from closing: if the decider raises while learning, that tick's
learning is skipped (never retried, so no label is learned twice) and the failure logged and
counted (``Outputs.model_errors``).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping

import numpy as np

from repricer.streams.engine.close import StepWork, saved_view
from repricer.streams.engine.config import EngineConfig
from repricer.streams.engine.outputs import Outputs
from repricer.streams.engine.state import OpenWindows, PartitionState, SkuState

log = logging.getLogger(__name__)

_STALE = -2  # a cached "learned up to" no partition record has: forces a restore

# the SKUs of one step of a tick: (sku, its state, its open windows)
Closing = list[tuple[str, SkuState, OpenWindows]]


def model_failed(stage: str, partition: int, b: int | None, n: int, out: Outputs) -> None:
    """Log the decider's exception (once per stage and step) and count it."""
    log.exception(
        "decider failed in %s (partition %s, tick closing before %s, %d SKUs): skipped, the "
        "windows still close",
        stage,
        partition,
        b,
        n,
    )
    out.model_errors[stage] += 1


class PooledLearner:
    """Phase 1 of a tick: the shared model learns the tick's labels exactly once.

    It keeps, per partition, the tick its in-memory model has learned up to; when that is not the
    partition record's (another worker had the partition, or a crash), the model is restored from
    the record's snapshot first.
    """

    def __init__(self) -> None:
        self.upto: dict[int, int | None] = {}

    def learn_once(
        self,
        cfg: EngineConfig,
        closing: Closing,
        b: int,
        pm: PartitionState,
        partition: int,
        meta: MutableMapping[str, PartitionState],
        out: Outputs,
    ) -> bool:
        """Learn the labels of ``closing`` before ``b`` unless the partition record says it was
        done (returns whether it learned: the partition record then has to be made durable
        first).

        Its snapshot and the tick it covers are written to the partition record *before* any SKU
        record of the tick, so a replay after a crash skips it, while SKUs closed before the crash
        skip their windows (their next window moved on) and the rest do their per-SKU part.

        If the decider raises, the shared model goes back to its snapshot before the tick and the
        tick counts as done all the same: its labels are skipped (``skipped`` in the partition
        record), never learned twice.
        """
        decider = cfg.decider
        if self.upto.get(partition) != pm.learned_upto:
            if pm.model:
                decider.restore(pm.model)
            self.upto[partition] = pm.learned_upto
        if (pm.learned_upto or -1) >= b:
            return False
        labelled = [
            (st, op, pend)
            for _, st, op in closing
            if (pend := st.pending) and pend.window_start < b
        ]
        synced = True  # the model in memory is the one the partition record will hold
        if labelled:
            views = [saved_view(st, pend) for st, _, pend in labelled]
            prices = np.array([pend.price for _, _, pend in labelled])
            units = np.array(
                [_units_of(op, pend.window_start) for _, op, pend in labelled], dtype=np.float64
            )
            # the model as it was, to go back to if learning fails (the record's when there is one)
            before = pm.model or decider.snapshot()
            try:
                decider.learn_pooled(views, prices, units)
                snapshot = decider.snapshot()
            except Exception:
                model_failed("learn_pooled", partition, b, len(labelled), out)
                pm.skipped += len(labelled)
                synced = self._roll_back(cfg, partition, before)
            else:
                pm.labels += len(labelled)  # ever (fault-test audit)
                if snapshot is not None:
                    pm.model = snapshot
        pm.learned_upto = b
        self.upto[partition] = b if synced else _STALE
        meta[str(partition)] = pm
        return True

    @staticmethod
    def _roll_back(cfg: EngineConfig, partition: int, snapshot: str | None) -> bool:
        """The shared model back to ``snapshot`` after a failed update; False if it is not."""
        if snapshot is None:
            return True
        try:
            cfg.decider.restore(snapshot)
        except Exception:  # the next tick restores from the partition record
            log.exception("could not restore the shared model of partition %s", partition)
            return False
        return True


def learn_local(cfg: EngineConfig, work: StepWork, partition: int, e: int, out: Outputs) -> None:
    """Phase 2: a step's labels (at most one per SKU) learned by the SKUs' own models in one call.

    Only the SKU records written at the end of the tick change, so a crash before those writes
    replays the whole of it."""
    if not work.labels:
        return
    try:
        cfg.decider.learn_local_batch(
            [v for v, _, _ in work.labels],
            [pend.saved() for _, pend, _ in work.labels],
            np.array([u for _, _, u in work.labels], dtype=np.float64),
        )
    except Exception:
        # skipped, not retried: whatever the decider wrote to SKU states before it raised stays
        # (written once, with the SKU records)
        model_failed("learn_local_batch", partition, e, len(work.labels), out)


def _units_of(op: OpenWindows, ws: int) -> float:
    w = op.windows.get(ws)
    return float(w.units) if w else 0.0
