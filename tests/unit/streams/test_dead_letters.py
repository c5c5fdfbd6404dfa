"""Dead letters keep the original bytes (up to the cap), the key, and provenance headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from repricer.agents.sink import dead_letter_columns
from repricer.infra.clickhouse.values import _prepare_columns
from repricer.schemas import DeadLetter, Rejection, encode
from repricer.streams import dead_letters as dlq
from repricer.streams.headers import RESEND_OF, header


@dataclass
class Record:
    topic: str = "orders"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"SKU-1"
    value: bytes | None = b'{"order_id":"o1","qty":"two"}'
    timestamp: int = 1_767_225_600_123
    headers: list[tuple[str, bytes]] = field(default_factory=list)


REJ = Rejection(reason="wrong_type", detail="Expected `int`, got `str` - at `$.qty`")


def test_original_bytes_key_and_provenance_headers() -> None:
    rec = Record()
    letter = dlq.dead_letter(REJ, rec, rec.value, cap=1024)
    assert letter.key == b"SKU-1"
    dl = dlq.read(letter.value)
    assert dlq.payload_bytes(dl) == rec.value
    assert dlq.key_bytes(dl) == b"SKU-1"
    assert (dl.payload_size, dl.payload_truncated, dl.payload_kind) == (
        len(rec.value),
        False,
        "record",
    )
    assert dlq.letter_id(dl) == "orders/2@41"
    hd = letter.headers
    assert header(hd, dlq.REASON) == "wrong_type"
    assert header(hd, dlq.ERROR) == REJ.detail
    assert header(hd, dlq.SOURCE_TOPIC) == "orders"
    assert header(hd, dlq.SOURCE_PARTITION) == "2"
    assert header(hd, dlq.SOURCE_OFFSET) == "41"
    assert header(hd, dlq.SOURCE_TIMESTAMP) == "1767225600123"
    assert header(hd, dlq.FIRST_SEEN) == str(dl.received_at)
    assert header(hd, dlq.PAYLOAD_TRUNCATED) == "0"
    assert header(hd, "content-type") == "application/json"
    assert header(hd, "repricer-schema") == "DeadLetter"
    assert header(hd, "repricer-schema-version") == "2"
    assert (header(hd, "repricer-producer") or "").startswith("repricer/")
    assert header(hd, "repricer-worker")
    assert header(hd, RESEND_OF) is None


def test_above_the_cap_is_kept_truncated_never_dropped() -> None:
    big = b'{"x":"' + b"a" * 5000 + b'"}'
    letter = dlq.dead_letter(
        Rejection(reason="oversize", detail="big"), Record(value=big), big, cap=100
    )
    dl = dlq.read(letter.value)
    assert dlq.payload_bytes(dl) == big[:100]
    assert (dl.payload_size, dl.payload_truncated) == (len(big), True)
    assert header(letter.headers, dlq.PAYLOAD_SIZE) == str(len(big))
    assert header(letter.headers, dlq.PAYLOAD_TRUNCATED) == "1"


def test_binary_payload_and_key_round_trip_through_base64() -> None:
    raw, key = b"\xff\xfe\x00garbage", b"\x80k"
    letter = dlq.dead_letter(Rejection(reason="not_utf8", detail="x"), Record(key=key), raw)
    dl = dlq.read(letter.value)
    assert (dl.payload_encoding, dl.key_encoding) == ("base64", "base64")
    assert dlq.payload_bytes(dl) == raw
    assert dlq.key_bytes(dl) == key


def test_faust_seconds_timestamp_and_resend_chain() -> None:
    rec = Record(timestamp=1_767_225_600.5, headers=[(RESEND_OF, b"orders/0@7")])  # type: ignore[arg-type]
    letter = dlq.dead_letter(REJ, rec, rec.value)
    dl = dlq.read(letter.value)
    assert dl.source_timestamp == 1_767_225_600_500
    assert dl.resend_of == "orders/0@7"
    assert header(letter.headers, RESEND_OF) == "orders/0@7"


def test_a_v1_letter_still_reads_and_sinks() -> None:
    v1 = DeadLetter(
        reason="empty",
        detail="message has no value",
        source_topic="orders",
        source_partition=0,
        source_offset=3,
        payload_excerpt="",
        received_at=1_767_225_600_000,
    )
    raw = (
        b'{"reason":"empty","detail":"d","source_topic":"orders","source_partition":0,'
        b'"source_offset":3,"payload_excerpt":"{","received_at":1767225600000}'
    )
    assert dlq.read(raw).payload == ""
    cols = dead_letter_columns([encode(v1), raw])["dead_letters"]
    assert _prepare_columns("dead_letters", cols)[0] == 2
    assert cols["record_key"] == ["", ""]


def test_v2_letters_fill_every_new_column() -> None:
    rec = Record()
    letter = dlq.dead_letter(REJ, rec, rec.value)
    cols = dead_letter_columns([letter.value])["dead_letters"]
    assert _prepare_columns("dead_letters", cols)[0] == 1
    assert cols["payload"] == [rec.value.decode()]
    assert cols["record_key"] == ["SKU-1"]
    assert cols["payload_truncated"] == [0]
    assert cols["source_timestamp"] == [rec.timestamp]
    assert cols["repricer_version"][0]
