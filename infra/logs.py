"""Log output: the usual text lines, or one JSON object per line (``REPRICER_LOG_FORMAT=json``).

A JSON line has ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``pid`` and ``msg``, plus, where a
log call knows them (``extra=``), the same named fields everywhere: ``sku``, ``partition``,
``offset``, ``topic``, ``reason``; an exception adds ``exc``. Messages are formatted exactly as in
text mode, so what text mode masks (secrets are ``SecretStr`` in the settings) stays masked.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
FIELDS = ("sku", "partition", "offset", "topic", "reason")
TEXT = "[%(asctime)s] [%(process)s] [%(levelname)s] %(name)s: %(message)s"
NOISY = ("kafka", "aiokafka")  # client libraries that log every reconnect at INFO


class JsonFormatter(logging.Formatter):
    """One JSON object per record.

    >>> rec = logging.LogRecord("repricer", logging.WARNING, "f.py", 1, "rewound %s", (7,), None)
    >>> rec.partition = 3
    >>> out = json.loads(JsonFormatter().format(rec))
    >>> (out["level"], out["msg"], out["partition"])
    ('WARNING', 'rewound 7', 3)
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


LEVELS = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING}


def level(name: str) -> int:
    """A level from the worker's ``--loglevel`` names (crit, error, warn, info, debug).

    >>> level("warn"), level("debug")
    (30, 10)
    """
    return LEVELS.get(name) or logging.getLevelName(name.upper())


def log_format() -> str:
    """``REPRICER_LOG_FORMAT`` (text or json); a clear error for anything else."""
    fmt = os.environ.get("REPRICER_LOG_FORMAT", "text").strip().lower()
    if fmt not in FORMATS:
        raise SystemExit(f"REPRICER_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def logging_config(fmt: str, level: int | str = logging.INFO) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``fmt``: what the CLI and the Faust worker both use."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"repricer": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "repricer",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {name: {"level": "WARNING"} for name in NOISY},
    }


def setup(fmt: str, level: int | str = logging.INFO) -> None:
    """Configure the root logger for a command-line run."""
    import logging.config

    logging.config.dictConfig(logging_config(fmt, level))
    if fmt == "json":
        sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    logging.getLogger("repricer").critical("uncaught exception", exc_info=(kind, exc, tb))
