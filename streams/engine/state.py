"""The engine's durable records: what its three changelog-backed tables hold.

* ``SkuState`` (table ``sku-state``, key: SKU): catalog, price, demand averages, control flags,
  LSTM history, the models' per-SKU state and the pending forecast; written when the SKU's
  windows close and on catalog/control records.
* ``OpenWindows`` (table ``sku-open``, key: SKU): the SKU's open windows, written per event
  (small on purpose: it is the hot path).
* ``PartitionState`` (table ``partition-state``, key: partition as text): the partition's
  watermark, boundary, kill switch, shared-model snapshot and conservation counts.

The changelog wire format is JSON with the short keys these records have always had
(``msgspec.field(name=...)``), so state written before the records were typed decodes, and
records written now decode in the same shape. The tables hold the records as objects; a record
turns into its JSON form when it is written to the changelog (``__json__``, which Faust's JSON
codec calls), and a value recovered from the changelog (a plain mapping) becomes a record again
at the table boundary (``load``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from msgspec import field

R = TypeVar("R", bound="Record")


class Record(msgspec.Struct, kw_only=True):
    """A table value: a typed record whose JSON form is the changelog record."""

    def __json__(self) -> Any:
        """The JSON-compatible form Faust's JSON codec writes to the changelog."""
        return to_wire(self)


class Counts(msgspec.Struct, array_like=True):
    """``[events, units]``: a conservation count."""

    events: int = 0
    units: int = 0

    def add(self, events: int, units: int) -> None:
        self.events += events
        self.units += units


class WindowCounts(msgspec.Struct, array_like=True):
    """One open window of a SKU: ``[orders, units, revenue, views, carts, removes]``."""

    orders: int = 0
    units: int = 0
    revenue: float = 0.0
    views: int = 0
    carts: int = 0
    removes: int = 0

    def counts(self) -> tuple[int, int]:
        """(events, units) it holds: its orders plus its clicks, and its units."""
        return int(self.orders + self.views + self.carts + self.removes), int(self.units)


class Catalog(msgspec.Struct, kw_only=True):
    """The SKU's latest catalog record."""

    cost: float
    base_price: float
    min_price: float
    max_price: float
    currency: str
    stock: int | None = None


class Pending(msgspec.Struct, kw_only=True):
    """The forecast of a SKU's next window, saved when it was made: its close labels it (the
    models learn from the view it was made from, rebuilt from these fields)."""

    sku: str
    window_start: int = field(name="ws")
    price: float
    units_ewma: float = field(name="ue")
    views_ewma: float = field(name="ve")
    last_units: float = field(name="lu")
    last_views: float = field(name="lv")
    windows_seen: int = field(name="n")
    predictions: dict[str, float] = field(default_factory=dict, name="pred")

    def saved(self) -> dict[str, Any]:
        """What the decider's ``learn_local_batch`` reads of the forecast: its price and its
        predictions by model."""
        return {"price": self.price, "pred": self.predictions}


class SkuState(Record):
    """A SKU's state (table ``sku-state``)."""

    partition: int = field(name="p")
    catalog: Catalog | None = field(default=None, name="cat")
    price: float | None = None
    since: int = 0  # event time the price has been in force since
    version: int = field(default=0, name="ver")  # PriceState version
    last_change: int | None = None
    # event times of its latest price changes (as many as the per-SKU rate limit reads)
    recent_changes: list[int] = field(default_factory=list, name="chg")
    next_window: int | None = field(default=None, name="next")  # first window not closed
    units_ewma: float = field(default=0.0, name="ue")
    views_ewma: float = field(default=0.0, name="ve")
    windows_seen: int = field(default=0, name="n")
    frozen: bool = False  # per-SKU kill switch
    override: float | None = None  # manual price
    mode: str | None = None  # "live"/"shadow" set for this SKU (None: its category's, ...)
    category: str | None = field(default=None, name="catg")  # from its latest catalog record
    control_by: str = field(default="", name="cby")  # "who: why" of its latest manual command
    offset: int = field(default=-1, name="off")  # SKU-topic offset of the last record applied
    history: list[list[float]] = field(default_factory=list, name="hist")  # LSTM feature rows
    # the models' own per-SKU state (``SkuView.state``): theirs to shape
    model_state: dict[str, Any] = field(default_factory=dict, name="m")
    pending: Pending | None = field(default=None, name="pend")
    # source partition -> offset of the latest catalog/control record applied from it
    source_offsets: dict[str, int] = field(default_factory=dict, name="at")
    sold: int = 0  # units sold since the latest catalog record (its stock is the count then)
    emitted: Counts = field(default_factory=Counts, name="em")  # in closed windows, ever
    labels: int = 0  # labels learned, ever (fault-test audit)

    def stock_left(self) -> float | None:
        stock = self.catalog.stock if self.catalog is not None else None
        return None if stock is None else float(max(stock - self.sold, 0))


class OpenWindows(Record):
    """A SKU's open windows and the offsets that make replays harmless (table ``sku-open``).

    Conservation counts, each ``[events, units]`` ever: ``accepted`` into a window,
    ``late_counts`` late, ``duplicates`` duplicate orders (``SkuState.emitted`` keeps what
    closed windows emitted).
    """

    windows: dict[int, WindowCounts] = field(default_factory=dict, name="w")  # by start
    late: int = 0  # late events not yet counted on an emitted row
    sources: dict[str, int] = field(default_factory=dict, name="src")  # source -> last offset
    offset: int = field(default=-1, name="off")  # SKU-topic offset of the last event folded
    # 48-bit hashes of the order ids folded into each open window (``fold.order_key``)
    order_ids: dict[int, list[int]] = field(default_factory=dict, name="ids")
    accepted: Counts = field(default_factory=Counts, name="a")
    late_counts: Counts = field(default_factory=Counts, name="lt")
    duplicates: Counts = field(default_factory=Counts, name="dp")

    def __json__(self) -> Any:
        """As ``Record``, but order ids, late and duplicate counts only once there are any:
        this record is written per event, so it stays as small as it was before it was typed
        (those keys decode to their defaults when absent)."""
        wire = to_wire(self)
        if not wire["ids"]:
            del wire["ids"]
        for key in ("lt", "dp"):
            if wire[key] == [0, 0]:
                del wire[key]
        return wire


class Accounting(msgspec.Struct, kw_only=True):
    """Where a partition's accepted events are, as counted at the end of its latest tick.

    ``accepted`` is every event folded on time, late, or as a duplicate (each once: replays are
    not accepted again); ``emitted`` is in closed windows (rows sent downstream), ``open`` in
    windows still open, ``late`` and ``duplicate`` in the dead-letter topic. Each is
    ``[events, units]``; ``unaccounted = accepted - emitted - open - late - duplicate`` must be
    zero in both (recomputed by ``balance``, and whenever a record is built or decoded).
    """

    accepted: list[int] = field(default_factory=lambda: [0, 0])
    emitted: list[int] = field(default_factory=lambda: [0, 0])
    open: list[int] = field(default_factory=lambda: [0, 0])
    late: list[int] = field(default_factory=lambda: [0, 0])
    duplicate: list[int] = field(default_factory=lambda: [0, 0])
    unaccounted: list[int] = field(default_factory=lambda: [0, 0])
    skus: int = 0
    bad_skus: list[str] = field(default_factory=list)  # a few SKUs whose counts do not balance

    def __post_init__(self) -> None:
        self.balance()

    def balance(self) -> list[int]:
        """Recompute ``unaccounted`` from the other counts; returns it."""
        self.unaccounted = [
            self.accepted[i] - self.emitted[i] - self.open[i] - self.late[i] - self.duplicate[i]
            for i in range(2)
        ]
        return self.unaccounted

    def to_dict(self) -> dict[str, Any]:
        return to_wire(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Accounting:
        return msgspec.convert(d, cls)


class PartitionState(Record):
    """A SKU-events partition's state (table ``partition-state``, key: the partition as text)."""

    sources: dict[str, int] = field(default_factory=dict, name="srcs")  # source -> event time
    watermark: int | None = field(default=None, name="wm")
    boundary: int | None = field(default=None, name="b")  # windows starting before are closed
    offset: int = field(default=-1, name="off")  # of the last watermark/partition control
    frozen_all: bool = False  # the partition's kill switch
    mode: str | None = None  # "live"/"shadow" set for every SKU ('*')
    category_modes: dict[str, str] = field(default_factory=dict, name="cmodes")  # by category
    closing: bool = False  # a tick is under way (set until it finished: a replay completes it)
    learned_upto: int | None = None  # the shared model learned every tick closing before this
    accounting: Accounting | None = field(default=None, name="acct")
    labels: int = 0  # labels the shared model learned, ever (fault-test audit)
    skipped: int = 0  # labels skipped because the shared model raised, ever
    model: str | None = None  # the shared model's snapshot


TABLE_RECORDS: dict[str, type[Record]] = {
    "sku-state": SkuState,
    "sku-open": OpenWindows,
    "partition-state": PartitionState,
}

_encoder = msgspec.json.Encoder()


def to_wire(record: msgspec.Struct) -> Any:
    """The record's JSON-compatible form: exactly what its changelog record holds."""
    return msgspec.to_builtins(record, str_keys=True)


def load(typ: type[R], value: Any) -> R:
    """A table value as its record: as is, or from the JSON form a changelog recovery left."""
    if isinstance(value, typ):
        return value
    return msgspec.convert(value, typ, str_keys=True)


def encode(record: Record) -> bytes:
    """The record as changelog JSON bytes (what Faust's JSON codec writes)."""
    return _encoder.encode(record.__json__())


def decode(typ: type[R], raw: bytes | str) -> R:
    """A changelog JSON record (written by any version of the engine) as ``typ``."""
    return msgspec.json.decode(raw, type=typ)
