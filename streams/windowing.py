"""Per-SKU event-time tumbling windows and the decision step at window close.

``WindowEngine.handle`` is the whole per-partition state machine, written against two plain
mutable mappings (in the worker they are changelog-backed Faust tables; in unit tests, dicts):

* ``skus[sku]``: the SKU's open windows, catalog, current price, demand averages, control flags
  and the offset of the last envelope applied to it (so a replay after a crash is skipped);
* ``meta[str(partition)]``: the partition's watermark and global freeze flag.

A window ``[s, s+W)`` closes when the partition watermark (highest forwarded event time minus the
allowed lateness) reaches ``s+W``. Closing walks every SKU of the partition, so SKUs that sold
nothing get a zero-demand window too. Events for an already-closed window are *late*: counted
in the next emitted window's ``late_events`` and returned to the caller for the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from models.guardrails import Bounds, GuardrailConfig, apply_guardrails
from models.policy import DemandSignal, RulePolicy, units_at
from schemas.events import ClicksWindow, Forecast, PriceChange, PriceState, SalesWindow
from streams.envelope import (
    CatalogEnv,
    ClickEnv,
    ControlEnv,
    Envelope,
    EventEnv,
    OrderEnv,
    WatermarkEnv,
)

log = logging.getLogger(__name__)

State = dict[str, Any]
EWMA_ALPHA = 0.3
MAX_GAP_WINDOWS = 1440  # a watermark jump longer than a day does not emit a day of empty windows


@dataclass
class Outputs:
    """What one envelope produced; the agent publishes these."""

    sales: list[SalesWindow] = field(default_factory=list)
    clicks: list[ClicksWindow] = field(default_factory=list)
    changes: list[PriceChange] = field(default_factory=list)
    prices: list[PriceState] = field(default_factory=list)
    late: list[EventEnv] = field(default_factory=list)
    windows_closed: int = 0
    decisions: int = 0
    skipped_replay: bool = False


def decision_id(sku: str, window_start: int, old: float, new: float, policy: str) -> str:
    """Deterministic PriceChange id: the same decision always gets the same id."""
    raw = f"{sku}|{window_start}|{old:.6f}|{new:.6f}|{policy}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _new_state(partition: int) -> State:
    return {
        "p": partition,
        "cat": None,
        "price": None,
        "since": 0,
        "ver": 0,
        "last_change": None,
        "open": {},
        "next": None,
        "late": 0,
        "ue": 0.0,
        "ve": 0.0,
        "n": 0,
        "frozen": False,
        "override": None,
        "off": -1,
    }


class WindowEngine:
    """Folds envelopes into per-SKU windows and decides prices when windows close."""

    def __init__(
        self,
        *,
        window_ms: int,
        lateness_ms: int,
        guardrails: GuardrailConfig,
        policy: RulePolicy | None = None,
        rate_limit_per_tick: int = 10_000,
        idle_source_ms: int = 300_000,
    ) -> None:
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.guardrails = guardrails
        self.policy = policy or RulePolicy()
        self.rate_limit_per_tick = rate_limit_per_tick
        self.idle_source_ms = idle_source_ms

    # -- helpers -------------------------------------------------------------------
    def window_of(self, ts: int) -> int:
        return ts - ts % self.window_ms

    def boundary(self, watermark: int | None) -> int | None:
        """Windows starting before this are closed."""
        if watermark is None:
            return None
        return self.window_of(watermark - self.lateness_ms)

    # -- main entry ------------------------------------------------------------------
    def handle(
        self,
        env: Envelope,
        *,
        partition: int,
        offset: int,
        skus: MutableMapping[str, State],
        meta: MutableMapping[str, State],
    ) -> Outputs:
        out = Outputs()
        pkey = str(partition)
        pm = meta.get(pkey) or {"srcs": {}, "wm": None, "b": None, "off": -1, "frozen_all": False}
        if isinstance(env, WatermarkEnv) or (isinstance(env, ControlEnv) and env.sku == "*"):
            if offset <= pm["off"]:
                out.skipped_replay = True
                return out
            if isinstance(env, WatermarkEnv):
                self._on_watermark(env, pm, partition, skus, out)
            else:
                if env.action in ("freeze", "unfreeze"):
                    pm["frozen_all"] = env.action == "freeze"
                else:
                    log.warning("ignoring %s for '*': overrides are per SKU", env.action)
            pm["off"] = offset
            meta[pkey] = pm
            return out

        st = skus.get(env.sku)
        if st is None:
            st = _new_state(partition)
            b = pm.get("b")
            st["next"] = b
        elif offset <= st["off"]:
            out.skipped_replay = True
            return out
        if isinstance(env, OrderEnv | ClickEnv):
            srcs = st.setdefault("src", {})
            if env.off <= srcs.get(env.src, -1):  # the ingest hop replayed this source event
                out.skipped_replay = True
                return out
            srcs[env.src] = env.off
            ws = self.window_of(env.ts)
            if st["next"] is None or (st["n"] == 0 and not st["open"] and ws > st["next"]):
                # a SKU's windows start at its first event (or, if that is late, the boundary)
                st["next"] = ws if st["next"] is None else max(st["next"], ws)
            if ws < st["next"]:
                st["late"] += 1
                out.late.append(env)
            else:
                w = st["open"].setdefault(str(ws), [0, 0, 0.0, 0, 0, 0])
                if isinstance(env, OrderEnv):
                    w[0] += 1
                    w[1] += env.qty
                    w[2] += env.qty * env.price
                else:
                    w[{"view": 3, "add_to_cart": 4, "remove_from_cart": 5}[env.kind]] += 1
        elif isinstance(env, CatalogEnv):
            st["cat"] = {
                "cost": env.cost,
                "base_price": env.base_price,
                "min_price": env.min_price,
                "max_price": env.max_price,
                "currency": env.currency,
                "stock": env.stock,
            }
            if st["price"] is None:
                st["price"] = env.base_price
                st["since"] = pm["wm"] or 0
                out.prices.append(
                    PriceState(
                        sku=env.sku,
                        price=env.base_price,
                        currency=env.currency,
                        since=st["since"],
                        version=0,
                    )
                )
        elif isinstance(env, ControlEnv):
            if env.action in ("freeze", "unfreeze"):
                st["frozen"] = env.action == "freeze"
            elif env.action == "override":
                st["override"] = env.price
            elif env.action == "clear_override":
                st["override"] = None
        st["off"] = offset
        skus[env.sku] = st
        return out

    # -- closing -------------------------------------------------------------------------
    def watermark(self, srcs: dict[str, int]) -> int | None:
        """Event time up to which every live source partition has forwarded its events.

        The minimum over source partitions, ignoring any that trail the newest by more than
        ``idle_source_ms`` (an idle partition must not stop every window from closing).
        """
        if not srcs:
            return None
        newest = max(srcs.values())
        return min(ts for ts in srcs.values() if ts >= newest - self.idle_source_ms)

    def _on_watermark(
        self,
        env: WatermarkEnv,
        pm: State,
        partition: int,
        skus: MutableMapping[str, State],
        out: Outputs,
    ) -> None:
        srcs = pm.setdefault("srcs", {})
        if env.ts <= srcs.get(env.src, -1):
            return
        srcs[env.src] = env.ts
        ts = self.watermark(srcs)
        if ts is None or (pm["wm"] is not None and ts <= pm["wm"]):
            return
        pm["wm"] = ts
        b = self.boundary(ts)
        if b is None or (pm["b"] is not None and b <= pm["b"]):
            return
        pm["b"] = b
        changes_left = self.rate_limit_per_tick
        for sku, st in list(skus.items()):
            if st.get("p") != partition:
                continue
            if st["next"] is None:  # catalog-only SKU: its zero-demand windows start here
                st["next"] = b
                skus[sku] = st
                continue
            if st["next"] >= b:
                continue
            last = self._close_until(sku, st, b, out)
            if last is not None and st["cat"] is not None:
                changed = self._decide(sku, st, last, pm, out, rate_ok=changes_left > 0)
                changes_left -= int(changed)
            skus[sku] = st

    def _close_until(
        self, sku: str, st: State, b: int, out: Outputs
    ) -> tuple[int, int, int] | None:
        """Emit every window of ``sku`` that starts before ``b``; returns the last (start, units, views)."""
        W = self.window_ms
        if (b - st["next"]) // W > MAX_GAP_WINDOWS:
            skip_to = b - MAX_GAP_WINDOWS * W
            for k in [k for k in st["open"] if int(k) < skip_to]:
                del st["open"][k]
            st["next"] = skip_to
        last = None
        price = st["price"] or 0.0
        while st["next"] < b:
            ws = st["next"]
            orders, units, revenue, views, carts, removes = st["open"].pop(
                str(ws), [0, 0, 0.0, 0, 0, 0]
            )
            out.sales.append(
                SalesWindow(
                    sku=sku,
                    window_start=ws,
                    window_end=ws + W,
                    orders=orders,
                    units=units,
                    revenue=round(revenue, 6),
                    price=price,
                    late_events=st["late"],
                )
            )
            out.clicks.append(
                ClicksWindow(
                    sku=sku,
                    window_start=ws,
                    window_end=ws + W,
                    views=views,
                    add_to_cart=carts,
                    remove_from_cart=removes,
                )
            )
            st["late"] = 0
            if last is not None:  # only the newest window feeds the decision below
                self._update_averages(st, last[1], last[2])
            last = (ws, units, views)
            st["next"] = ws + W
            out.windows_closed += 1
        return last

    @staticmethod
    def _update_averages(st: State, units: int, views: int) -> None:
        if st["n"] == 0:
            st["ue"], st["ve"] = float(units), float(views)
        else:
            st["ue"] += EWMA_ALPHA * (units - st["ue"])
            st["ve"] += EWMA_ALPHA * (views - st["ve"])
        st["n"] += 1

    def _decide(
        self,
        sku: str,
        st: State,
        last: tuple[int, int, int],
        pm: State,
        out: Outputs,
        *,
        rate_ok: bool,
    ) -> bool:
        ws, units, views = last
        cat = st["cat"]
        now = ws + self.window_ms
        signal = DemandSignal(
            sku=sku,
            price=st["price"],
            cost=cat["cost"],
            units=units,
            views=views,
            units_ewma=st["ue"],
            views_ewma=st["ve"],
            windows_seen=st["n"],
        )
        self._update_averages(st, units, views)
        proposal = self.policy.propose(signal)
        bounds = Bounds(cost=cat["cost"], min_price=cat["min_price"], max_price=cat["max_price"])
        g = apply_guardrails(
            current=st["price"],
            proposed=proposal.price,
            bounds=bounds,
            cfg=self.guardrails,
            now_ms=now,
            last_change_ms=st["last_change"],
            frozen=st["frozen"] or pm.get("frozen_all", False),
            override=st["override"],
            rate_ok=rate_ok,
        )
        out.decisions += 1
        if not g.changed:
            return False
        old = st["price"]
        reasons = list(proposal.reasons)
        if st["override"] is not None:
            reasons = ["manual_override"]
        out.changes.append(
            PriceChange(
                event_id=decision_id(sku, ws, old, g.price, self.policy.version),
                sku=sku,
                old_price=old,
                new_price=g.price,
                currency=cat["currency"],
                decided_at=now,
                effective_at=now,
                window_start=ws,
                reasons=reasons,
                forecast=Forecast(
                    units_at_old=proposal.forecast_at_old,
                    units_at_new=units_at(
                        g.price, old, proposal.forecast_at_old, proposal.elasticity
                    ),
                ),
                elasticity=proposal.elasticity,
                model_versions=proposal.model_versions,
                guardrails=list(g.applied),
                policy_version=self.policy.version,
            )
        )
        st["price"], st["since"], st["last_change"] = g.price, now, now
        st["ver"] += 1
        out.prices.append(
            PriceState(
                sku=sku, price=g.price, currency=cat["currency"], since=now, version=st["ver"]
            )
        )
        return True
