"""Prometheus text exposition (format 0.0.4): metric families with HELP/TYPE lines and samples.

Plain text building, no client library and no knowledge of the worker: ``streams.metrics`` says
what a worker exposes, the web agent serves it on ``/metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Builds a Prometheus text exposition: one HELP/TYPE block per metric family."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lbl = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            self._lines.append(
                f"{name}{{{lbl}}} {_fmt_value(value)}" if lbl else f"{name} {_fmt_value(value)}"
            )

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"
