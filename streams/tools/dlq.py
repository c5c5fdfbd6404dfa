"""``repricer dlq``: list, show and resend dead letters (the work behind ``streams.cli.dlq``).

Everything is read from Kafka: the dead-letter topic holds each letter with the original record
(``streams.dead_letters``), and the source topics hold what was resent. A letter's id is where
the refused record was read, ``topic/partition@offset``; several dead-letter records with one id
(the same record refused again after an ingest restart) are one letter.

Resend, idempotently: a resent record goes to the letter's source topic and partition with its
original key and the header ``repricer-resend-of: <id>``. Before sending, the source partitions
are read from the oldest letter's offset on for that header: a letter is *already resent* when
a record carrying its id is there and was not itself dead-lettered (a resend refused again --
still broken -- leaves its letter resendable; its own dead letter names the original id in
``resend_of``, and a later resend still says ``repricer-resend-of: <original id>``). ``--force``
skips that check; orders are still counted once while their window is open (the engine drops an
order id it already counted as ``duplicate_order``), clicks are not deduplicated by the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from kafka import KafkaProducer

from repricer.infra.kafka_client import kafka_python_config
from repricer.schemas import (
    CatalogItem,
    Click,
    ControlCommand,
    DeadLetter,
    Order,
    Rejection,
    decode,
)
from repricer.streams import dead_letters as dlq
from repricer.streams.headers import RESEND_OF, header, produced
from repricer.streams.settings import Settings
from repricer.streams.topic_read import Progress, read_topic


@dataclass(frozen=True)
class Entry:
    """One dead-letter record as read from the dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    headers: list[tuple[str, bytes]]
    letter: DeadLetter

    @property
    def id(self) -> str:
        return dlq.letter_id(self.letter)

    @property
    def root(self) -> str:
        """The id of the first refusal of this record (itself unless it was a resend)."""
        return self.letter.resend_of or self.id


def source_kinds(settings: Settings) -> dict[str, tuple[str, type]]:
    """Input topic -> (contract name, type): the topics a letter can be resent to."""
    return {
        settings.topic_orders: ("Order", Order),
        settings.topic_clicks: ("Click", Click),
        settings.topic_catalog: ("CatalogItem", CatalogItem),
        settings.topic_control: ("ControlCommand", ControlCommand),
    }


def parse_time(text: str) -> int:
    """Epoch ms of ``text``: an integer of epoch ms, or ISO 8601 (UTC when it has no offset)."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def read_letters(
    settings: Settings, *, timeout_s: float = 60.0, progress: Progress | None = None
) -> tuple[list[Entry], int]:
    """(every dead letter on the dead-letter topic, records that are no DeadLetter)."""
    out: list[Entry] = []
    unreadable = 0
    for r in read_topic(settings, settings.topic_dlq, timeout_s=timeout_s, progress=progress):
        try:
            letter = dlq.read(r.value or b"")
        except msgspec.DecodeError:
            unreadable += 1
            continue
        out.append(Entry(r.partition, r.offset, r.key, list(r.headers or ()), letter))
    return out, unreadable


@dataclass(frozen=True)
class Filter:
    reasons: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def __call__(self, e: Entry) -> bool:
        dl = e.letter
        return (
            (not self.reasons or dl.reason in self.reasons)
            and (not self.topics or dl.source_topic in self.topics)
            and (not self.ids or e.id in self.ids or e.root in self.ids)
            and (self.since_ms is None or dl.received_at >= self.since_ms)
            and (self.until_ms is None or dl.received_at < self.until_ms)
        )


def latest(entries: Iterable[Entry]) -> dict[str, Entry]:
    """One entry per letter id: the newest dead-letter record of it."""
    out: dict[str, Entry] = {}
    for e in entries:
        have = out.get(e.id)
        if have is None or e.letter.received_at >= have.letter.received_at:
            out[e.id] = e
    return out


def summary(entries: list[Entry], group_by: list[str], *, with_ids: int = 0) -> dict[str, Any]:
    """Letters grouped by ``group_by`` (``reason``, ``topic``, ``hour``, ``day``)."""
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    letters = latest(entries)
    for e in sorted(letters.values(), key=lambda e: e.letter.received_at):
        dl = e.letter
        key = tuple(
            {
                "reason": dl.reason,
                "topic": dl.source_topic,
                "hour": iso(dl.received_at // 3_600_000 * 3_600_000),
                "day": iso(dl.received_at)[:10],
            }[g]
            for g in group_by
        )
        g = groups.setdefault(
            key,
            {
                **dict(zip(group_by, key, strict=True)),
                "letters": 0,
                "resendable": 0,
                "truncated": 0,
                "first_seen": iso(dl.received_at),
                "last_seen": iso(dl.received_at),
                "ids": [],
            },
        )
        g["letters"] += 1
        g["resendable"] += resendable(dl, None) is None
        g["truncated"] += dl.payload_truncated
        g["last_seen"] = iso(dl.received_at)
        if len(g["ids"]) < with_ids:
            g["ids"].append(e.id)
    rows = sorted(groups.values(), key=lambda g: -g["letters"])
    if not with_ids:
        for g in rows:
            del g["ids"]
    return {"letters": len(letters), "records": len(entries), "groups": rows}


def resendable(dl: DeadLetter, topics: Iterable[str] | None) -> str | None:
    """Why ``dl`` cannot be resent as it is (None if it can)."""
    if dl.payload_kind != "record":
        return "not_a_source_record"  # an engine envelope (late, duplicate): its bytes are ours
    if topics is not None and dl.source_topic not in topics:
        return "not_an_input_topic"
    if dl.payload_truncated:
        return "truncated"
    if not dl.payload and not dl.payload_size:
        return "no_payload"  # an empty record, or a v1 letter that kept only an excerpt
    return None


def show(entries: list[Entry], letter_id: str, settings: Settings) -> dict[str, Any] | None:
    """One letter: headers, key, payload (decoded as its source topic's contract if it can)."""
    copies = [e for e in entries if e.id == letter_id]
    if not copies:
        return None
    e = max(copies, key=lambda e: e.letter.received_at)
    dl = e.letter
    raw = dlq.payload_bytes(dl)
    key = dlq.key_bytes(dl)
    kinds = source_kinds(settings)
    decoded: Any = None
    if dl.payload_kind == "envelope" or dl.source_topic not in kinds:
        try:
            decoded = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            decoded = None
    else:
        result = decode(raw, kinds[dl.source_topic][1], max_bytes=max(len(raw), 1))
        decoded = (
            {"rejected_now": result.reason, "detail": result.detail}
            if isinstance(result, Rejection)
            else msgspec.to_builtins(result)
        )
    fields = msgspec.to_builtins(dl)
    fields.pop("payload", None)
    return {
        "id": e.id,
        "dead_letter_record": f"{settings.topic_dlq}/{e.partition}@{e.offset}",
        "copies": len(copies),
        "headers": {k: (v or b"").decode("utf-8", errors="replace") for k, v in e.headers},
        "key": None if key is None else key.decode("utf-8", errors="backslashreplace"),
        "letter": fields,
        "payload": raw.decode("utf-8", errors="backslashreplace"),
        "decoded": decoded,
        "resendable": resendable(dl, kinds) or "yes",
    }


def resent_roots(
    settings: Settings,
    entries: list[Entry],
    targets: list[Entry],
    *,
    timeout_s: float,
    progress: Progress | None,
) -> dict[str, list[str]]:
    """Root id -> positions (``topic/partition@offset``) of resends of it that were *not*
    dead-lettered again (accepted, or not processed yet)."""
    start: dict[str, dict[int, int]] = {}
    for e in targets:
        dl = e.letter
        part = start.setdefault(dl.source_topic, {})
        part[dl.source_partition] = min(part.get(dl.source_partition, 2**62), dl.source_offset)
    # positions ingest refused (a resend still broken); one the engine dead-lettered later
    # (late, duplicate order) was accepted as a record: that resend happened
    refused = {e.id for e in entries if e.letter.payload_kind == "record"}
    out: dict[str, list[str]] = {}
    for topic, parts in start.items():
        for r in read_topic(settings, topic, parts, timeout_s=timeout_s, progress=progress):
            root = header(r.headers, RESEND_OF)
            pos = f"{topic}/{r.partition}@{r.offset}"
            if root and pos not in refused:
                out.setdefault(root, []).append(pos)
    return out


def resend(
    settings: Settings,
    entries: list[Entry],
    select: Filter,
    *,
    payload: bytes | None = None,
    force: bool = False,
    dry_run: bool = False,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Resend the selected letters (see the module docstring); a JSON-able summary."""
    kinds = source_kinds(settings)
    by_root: dict[str, Entry] = {}
    for e in latest(filter(select, entries)).values():
        have = by_root.get(e.root)  # a resend refused again is the same letter as its root
        if have is None or e.letter.received_at >= have.letter.received_at:
            by_root[e.root] = e
    skipped: dict[str, list[str]] = {}
    todo: list[tuple[str, Entry]] = []
    for root, e in sorted(by_root.items()):
        why = None if payload is not None else resendable(e.letter, kinds)
        if payload is not None and e.letter.source_topic not in kinds:
            why = "not_an_input_topic"
        if why:
            skipped.setdefault(why, []).append(root)
        else:
            todo.append((root, e))
    if payload is not None:
        if len(by_root) != 1:
            raise ValueError(f"--payload replaces one letter's payload; {len(by_root)} selected")
        if todo:
            kind = kinds[todo[0][1].letter.source_topic][1]
            check = decode(payload, kind, max_bytes=settings.max_payload_bytes)
            if isinstance(check, Rejection) and not force:
                raise ValueError(
                    f"the fixed payload is refused too ({check.reason}: {check.detail}); "
                    "fix it, or --force to send it anyway"
                )
    already: dict[str, list[str]] = {}
    if todo and not force:
        if progress:
            progress(f"checking {len(todo)} letters against their source topics for resends")
        done = resent_roots(
            settings, entries, [e for _, e in todo], timeout_s=timeout_s, progress=progress
        )
        already = {root: done[root] for root, _ in todo if root in done}
        todo = [(root, e) for root, e in todo if root not in done]
    sent: list[dict[str, Any]] = []
    if todo and not dry_run:
        producer = KafkaProducer(acks="all", **kafka_python_config(settings))
        try:
            futures = []
            for root, e in todo:
                dl = e.letter
                name = kinds[dl.source_topic][0]
                futures.append(
                    (
                        root,
                        producer.send(
                            dl.source_topic,
                            key=dlq.key_bytes(dl),
                            value=payload if payload is not None else dlq.payload_bytes(dl),
                            partition=dl.source_partition,
                            headers=[*produced(name), (RESEND_OF, root.encode())],
                        ),
                    )
                )
            for i, (root, fut) in enumerate(futures, 1):
                md = fut.get(timeout=timeout_s)
                sent.append({"id": root, "to": f"{md.topic}/{md.partition}@{md.offset}"})
                if progress and (i % 500 == 0 or i == len(futures)):
                    progress(f"resent {i}/{len(futures)}")
        finally:
            producer.flush(timeout=timeout_s)
            producer.close()
    return {
        "selected": len(by_root),
        "resent": len(sent),
        "dry_run": dry_run,
        "would_resend": [root for root, _ in todo] if dry_run else [],
        "sent": sent,
        "already_resent": already,
        "skipped": skipped,
        "forced": force,
    }
