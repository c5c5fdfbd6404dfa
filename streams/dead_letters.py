"""Dead letters: the record repricer could not use, why, where it came from, and its bytes.

Nothing is dropped silently: ingest, the window agent and the sink park a record they cannot
use on the dead-letter topic with its reason (``schemas.Rejection``). A dead-letter record is
keyed like the original record (its original key) and its value is a ``DeadLetter`` (JSON)
holding the original value up to the payload cap (``max_payload_bytes``: a larger value is
still dead-lettered, its first bytes kept, with ``payload_truncated`` and the original size).
Its Kafka headers carry the provenance, so a consumer can route and filter without parsing:

=================================  ==========================================================
``repricer-dlq-reason``            the reason code (``wrong_type``, ``late_event``, ...)
``repricer-dlq-error``             the error text (the ``detail``)
``repricer-dlq-source-topic``      topic, partition, offset and Kafka timestamp (epoch ms)
``-source-partition`` / ``-offset``  of the record that was rejected
``repricer-dlq-source-timestamp``
``repricer-dlq-first-seen``        when repricer dead-lettered it (epoch ms)
``repricer-dlq-payload-size``      the original value's size in bytes
``repricer-dlq-payload-truncated`` ``1`` when the payload was cut at the cap, else ``0``
``repricer-resend-of``             on a record resent by ``repricer dlq resend``: the id
                                   (``topic/partition@offset``) of the dead letter it repairs
=================================  ==========================================================

plus the headers of every record repricer produces (``streams.headers``: content type, schema
``DeadLetter`` v2, repricer version, worker id).
"""

from __future__ import annotations

import base64
import time
from typing import Any, NamedTuple

import msgspec

from repricer.schemas import DeadLetter, Rejection, encode
from repricer.schemas.decode import DEFAULT_MAX_BYTES, excerpt
from repricer.streams import headers as h
from repricer.streams.envelope import EventEnv, pack

REASON = "repricer-dlq-reason"
ERROR = "repricer-dlq-error"
SOURCE_TOPIC = "repricer-dlq-source-topic"
SOURCE_PARTITION = "repricer-dlq-source-partition"
SOURCE_OFFSET = "repricer-dlq-source-offset"
SOURCE_TIMESTAMP = "repricer-dlq-source-timestamp"
FIRST_SEEN = "repricer-dlq-first-seen"
PAYLOAD_SIZE = "repricer-dlq-payload-size"
PAYLOAD_TRUNCATED = "repricer-dlq-payload-truncated"
ERROR_HEADER_CHARS = 1000  # the error text in a header is bounded; the value has it whole

_dec = msgspec.json.Decoder(DeadLetter)


class Letter(NamedTuple):
    """A dead-letter record to send: ``topic.send(key=..., value=..., headers=...)``."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]  # a list of its own: a Faust sensor may add to it


def _text(raw: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 text as it is, else base64."""
    try:
        return raw.decode("utf-8"), "utf8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _timestamp_ms(message: Any) -> int:
    """A Kafka record's timestamp in epoch ms: aiokafka gives int ms, Faust float seconds."""
    ts = getattr(message, "timestamp", None)
    if isinstance(ts, float):
        return int(ts * 1000)
    return ts if isinstance(ts, int) else -1


def letter(
    rej: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int = -1,
    cap: int = DEFAULT_MAX_BYTES,
    kind: str = "record",
    resend_of: str = "",
) -> Letter:
    """The dead-letter record of ``value`` (read at ``topic/partition@offset``) refused for
    ``rej``: at most ``cap`` bytes of it kept (the rest cut, flagged, never dropped)."""
    raw = value or b""
    kept = raw[:cap]
    payload, encoding = _text(kept)
    if key is None:
        key_text, key_encoding = None, "utf8"
    else:
        key_text, key_encoding = _text(key)
    now = int(time.time() * 1000)
    dl = DeadLetter(
        reason=rej.reason,
        detail=rej.detail,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        payload_excerpt=excerpt(raw),
        received_at=now,
        payload=payload,
        payload_encoding=encoding,  # type: ignore[arg-type]
        payload_size=len(raw),
        payload_truncated=len(raw) > cap,
        payload_kind=kind,  # type: ignore[arg-type]
        key=key_text,
        key_encoding=key_encoding,  # type: ignore[arg-type]
        source_timestamp=timestamp_ms,
        repricer_version=h.repricer_version(),
        resend_of=resend_of,
    )
    hdrs = [
        *h.produced("DeadLetter"),
        (REASON, rej.reason.encode()),
        (ERROR, rej.detail[:ERROR_HEADER_CHARS].encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (SOURCE_TIMESTAMP, str(timestamp_ms).encode()),
        (FIRST_SEEN, str(now).encode()),
        (PAYLOAD_SIZE, str(len(raw)).encode()),
        (PAYLOAD_TRUNCATED, b"1" if dl.payload_truncated else b"0"),
    ]
    if resend_of:
        hdrs.append((h.RESEND_OF, resend_of.encode()))
    return Letter(key, encode(dl), hdrs)


def dead_letter(
    rej: Rejection, message: Any, value: bytes | None, *, cap: int = DEFAULT_MAX_BYTES
) -> Letter:
    """The dead letter of ``message`` (a Kafka record: ``topic``, ``partition``, ``offset``,
    ``key``, ``timestamp``, ``headers``) whose ``value`` was rejected for ``rej``."""
    return letter(
        rej,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=getattr(message, "key", None),
        value=value,
        timestamp_ms=_timestamp_ms(message),
        cap=cap,
        resend_of=h.header(getattr(message, "headers", None), h.RESEND_OF) or "",
    )


def read(value: bytes) -> DeadLetter:
    """A dead letter from its record value (v1 letters get the v2 fields' defaults)."""
    return _dec.decode(value)


def letter_id(dl: DeadLetter) -> str:
    """The id of a dead letter: where its record was read, ``topic/partition@offset``."""
    return f"{dl.source_topic}/{dl.source_partition}@{dl.source_offset}"


def payload_bytes(dl: DeadLetter) -> bytes:
    """The original record value as kept (v1 letters only kept ``payload_excerpt``)."""
    if dl.payload_encoding == "base64":
        return base64.b64decode(dl.payload)
    return dl.payload.encode("utf-8")


def key_bytes(dl: DeadLetter) -> bytes | None:
    """The original record key."""
    if dl.key is None:
        return None
    if dl.key_encoding == "base64":
        return base64.b64decode(dl.key)
    return dl.key.encode("utf-8")


# -------------------------------------------------------------- events the engine refused


def late_letter(late: EventEnv) -> Letter:
    """The dead letter of a late event, located at the event's own source partition and offset
    (many late events can share one batch envelope; each keeps its own row downstream)."""
    return event_letter(late, "late_event", "after its window closed")


def duplicate_letter(dup: EventEnv) -> Letter:
    """The dead letter of an order whose id was already counted in its SKU window."""
    return event_letter(dup, "duplicate_order", "whose order id its window already counted")


def event_letter(env: EventEnv, reason: str, why: str) -> Letter:
    """The dead letter of one event the engine refused: its payload is the event's envelope
    (``payload_kind`` ``envelope``; the original record bytes stayed with ingest)."""
    kind = type(env).__name__.removesuffix("Env").lower()
    topic, _, partition = env.src.rpartition("/")
    return letter(
        Rejection(
            reason=reason,
            detail=f"{kind} for {env.sku} at ts={env.ts} from {env.src}@{env.off} {why}",
        ),
        topic=topic,
        partition=int(partition) if partition.isdigit() else -1,
        offset=env.off,
        key=env.sku.encode(),
        value=pack(env),
        kind="envelope",
    )
