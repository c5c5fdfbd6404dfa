"""A small, strict parser of the Prometheus text exposition format (0.0.4), for the web tests.

Strict where a scraper would be lenient: every sample belongs to a family declared by a
``# TYPE`` line before it, a family is declared once and its samples are contiguous, label
values are quoted with only the three legal escapes, no label set repeats, counters are
non-negative and the text ends with a newline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)(?: (-?\d+))?$")
_LABEL_PAIR = re.compile(rf'\s*({_LABEL})="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_SUFFIXES = ("_bucket", "_sum", "_count")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    type: str
    help: str = ""
    samples: dict[Labels, float] = field(default_factory=dict)


class MetricFamilies(dict[str, Family]):
    def value(self, name: str, **labels: str) -> float:
        """The sample of ``name`` with exactly ``labels`` (0 for a declared but empty family)."""
        fam = self[name]
        key = tuple(sorted(labels.items()))
        if not fam.samples and not labels:
            return 0.0
        return fam.samples.get(key, 0.0)


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], v)


def _labels(text: str, lineno: int) -> Labels:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL_PAIR.match(text, pos)
        if not m:
            raise ValueError(f"line {lineno}: bad labels {text!r}")
        if m.group(1) in out:
            raise ValueError(f"line {lineno}: label {m.group(1)} repeated")
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
        if m.group(3) == "" and pos < len(text):
            raise ValueError(f"line {lineno}: bad labels {text!r}")
    return tuple(sorted(out.items()))


def _value(text: str, lineno: int) -> float:
    if text in ("NaN", "+Inf", "-Inf"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"line {lineno}: bad value {text!r}")
    return float(text)


def parse_prometheus(text: str) -> MetricFamilies:
    if not text.endswith("\n"):
        raise ValueError("exposition must end with a newline")
    fams = MetricFamilies()
    current: Family | None = None
    closed: set[str] = set()
    helps: dict[str, str] = {}
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(_NAME, name):
                    raise ValueError(f"line {lineno}: bad metric name {name!r}")
                if parts[1] == "HELP":
                    if name in helps:
                        raise ValueError(f"line {lineno}: HELP for {name} twice")
                    helps[name] = parts[3] if len(parts) > 3 else ""
                    continue
                typ = parts[3] if len(parts) > 3 else ""
                if typ not in _TYPES:
                    raise ValueError(f"line {lineno}: bad type {typ!r}")
                if name in fams:
                    raise ValueError(f"line {lineno}: family {name} declared twice")
                if current is not None:
                    closed.add(current.name)
                current = fams[name] = Family(name, typ, helps.get(name, ""))
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"line {lineno}: not a sample: {line!r}")
        name, raw_labels, raw_value, _ts = m.groups()
        base = name
        if current is not None and current.type in ("histogram", "summary"):
            for suf in _SUFFIXES:
                if name == current.name + suf:
                    base = current.name
        if current is None or base != current.name:
            raise ValueError(f"line {lineno}: sample {name} outside its TYPE block")
        key = _labels(raw_labels or "", lineno)
        if name != base:
            key = (("__name__", name), *key)
        if key in current.samples:
            raise ValueError(f"line {lineno}: duplicate sample {name}{dict(key)}")
        value = _value(raw_value, lineno)
        if current.type == "counter" and not (value >= 0 or math.isnan(value)):
            raise ValueError(f"line {lineno}: negative counter {name}")
        current.samples[key] = value
    for name in helps:
        if name not in fams:
            raise ValueError(f"HELP without TYPE for {name}")
    return fams
