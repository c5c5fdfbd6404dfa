"""The window agent rewinds a SKU partition delivered ahead of what it applied.

faust-streaming can deliver a SKU partition's envelopes out of order around a rebalance and commit
past offsets its agent never saw (a record fetched before the seek is delivered first; the offsets
it jumped over become a "gap" its consumer may commit past). A two-worker fault run lost part of a
minute that way. The agent now keeps the last offset it applied per partition, durably, and
rewinds when an envelope arrives more than one past it (streams/continuity.py; the decisions are
unit-tested in tests/unit/streams/test_continuity.py).

This test drives the rewind through a real worker and broker: while the worker is down, its
record of the last applied offset of partition 0 is set three envelopes back, so the committed
offset it resumes from is ahead of it. The worker must seek back, apply the three again as the
replays they are (no event counted twice), and finish the run with every aggregate exact.

The worker runs with ``REPRICER_LOG_FORMAT=json`` and a password in its settings: every line it
logs must be a JSON object, the rewind line must carry its partition and offset as fields, and
the password must appear nowhere.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.infra.local.tansu import TOPIC_READ_SETTLE_S, TansuBroker
from repricer.streams.accounting import latest_records
from repricer.streams.continuity import applied_key
from tests.chaos.harness import FaultRun

pytestmark = pytest.mark.integration

BACK = 3


def test_envelopes_delivered_ahead_of_the_applied_offset_are_rewound(
    broker: TansuBroker, clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    url = clickhouse_server.url(f"chaos_rewind_{uuid.uuid4().hex[:8]}")
    secret = f"pw-{uuid.uuid4().hex}"
    run = FaultRun(
        broker, url, tmp_path, seed=31, skus=12, partitions=2, workers=1,
        log_format="json", kafka_password=secret,
    )  # fmt: skip
    for _ in range(3):
        run.send_minute(pause_s=2.5)
    run.workers[0].wait_until(lambda st: st.get("windows_closed", 0) > 0, timeout=60)
    run.workers[0].stop()  # SIGTERM: what it read is applied and committed

    s = run.settings[0]
    changelog = f"{s.app_id}-partition-state-changelog"
    key = applied_key(0)
    applied = latest_records(
        changelog, settle_s=TOPIC_READ_SETTLE_S, bootstrap_servers=broker.bootstrap
    ).get(key)
    assert isinstance(applied, int) and applied >= BACK, f"no applied offset recorded: {applied}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(
        changelog,
        key=json.dumps(key).encode(),
        value=json.dumps(applied - BACK).encode(),
        partition=0,
    ).get(timeout=10)
    producer.close()

    run.restart(0)
    for _ in range(3):
        run.send_minute(pause_s=2.5)
    r = run.finish()
    rewinds = sum(st.get("offset_rewinds", 0) for st in r.stats)
    print(f"\n[rewind] {r.summary()} applied {applied} set back by {BACK}; rewinds={rewinds}")
    assert rewinds >= 1, "the worker applied an envelope ahead of its applied offset"
    assert sum(st.get("envelopes_lost", 0) for st in r.stats) == 0
    assert r.verdict.ok, "\n".join(r.verdict.problems[:30])
    text = run.workers[0].log_path.read_text(errors="replace")
    assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line: JSON
    rewound = [x for x in lines if x.get("reason") == "offset_rewind"]
    assert rewound and rewound[0]["partition"] == 0 and "rewinding to" in rewound[0]["msg"]
    assert isinstance(rewound[0]["offset"], int) and rewound[0]["level"] == "WARNING"
