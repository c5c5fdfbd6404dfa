"""Prometheus exposition through ``prometheus_client``: metric families from plain numbers, and
the text format (0.0.4) of a registry.

No knowledge of the worker: ``streams.metrics`` says what a worker exposes (a collector that
reads its counters at scrape time), ``streams.telemetry`` holds its histograms, the web agent
serves the text on ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4"  # aiohttp adds the charset

Samples = Iterable[tuple[Mapping[str, str], float]]


def _samples(value_or_samples: float | Samples, labels: Sequence[str]) -> Samples:
    if isinstance(value_or_samples, int | float):
        if labels:
            raise ValueError("a labelled family takes (labels, value) samples")
        return [({}, value_or_samples)]
    return value_or_samples


def _family(
    cls: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    help_text: str,
    labels: Sequence[str],
    samples: Samples,
) -> CounterMetricFamily | GaugeMetricFamily:
    fam = cls(name, help_text, labels=list(labels))
    for values, value in samples:
        fam.add_metric([str(values[k]) for k in labels], float(value))
    return fam


def counter(
    name: str, help_text: str, value_or_samples: float | Samples, labels: Sequence[str] = ()
) -> CounterMetricFamily:
    """A counter family; ``name`` ends in ``_total`` (the client writes it so on the wire)."""
    if not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    fam = _family(CounterMetricFamily, name, help_text, labels, _samples(value_or_samples, labels))
    assert isinstance(fam, CounterMetricFamily)
    return fam


def gauge(
    name: str, help_text: str, value_or_samples: float | Samples, labels: Sequence[str] = ()
) -> GaugeMetricFamily:
    """A gauge family (never named like a counter: no ``_total``)."""
    if name.endswith("_total"):
        raise ValueError(f"gauge {name} must not end in _total")
    fam = _family(GaugeMetricFamily, name, help_text, labels, _samples(value_or_samples, labels))
    assert isinstance(fam, GaugeMetricFamily)
    return fam


def registry_of(*collectors: Collector) -> CollectorRegistry:
    """A fresh registry holding ``collectors`` (a collector may sit in several registries)."""
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors:
        registry.register(c)
    return registry


def render(registry: CollectorRegistry) -> str:
    """The text exposition (format 0.0.4) of everything ``registry`` collects now."""
    return generate_latest(registry).decode("utf-8")
