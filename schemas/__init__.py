"""Event contracts: the typed structs, their decoder, and the JSON Schema export."""

from repricer.schemas.decode import decode, excerpt
from repricer.schemas.events import (
    PUBLIC_CONTRACTS,
    CatalogItem,
    Click,
    ClicksWindow,
    ControlCommand,
    DeadLetter,
    Forecast,
    ForecastRow,
    Order,
    PriceChange,
    PriceState,
    Rejection,
    SalesWindow,
    encode,
    ts_ms,
)

__all__ = [
    "PUBLIC_CONTRACTS",
    "CatalogItem",
    "Click",
    "ClicksWindow",
    "ControlCommand",
    "DeadLetter",
    "Forecast",
    "ForecastRow",
    "Order",
    "PriceChange",
    "PriceState",
    "Rejection",
    "SalesWindow",
    "decode",
    "encode",
    "excerpt",
    "ts_ms",
]
