"""``repricer replay``: import history (catalog, orders, clicks) into Kafka, then end the input.

Files are CSV (header row) or JSON lines, chosen by extension (``.csv``, ``.jsonl``/``.ndjson``,
each optionally ``.gz``) or ``--format``. Columns are mapped to event fields with
``--map [KIND.]FIELD=COLUMN`` (identity for fields not mapped; unknown columns are dropped, so
extra export columns such as e-mail addresses never reach Kafka). Timestamps become epoch
milliseconds here: numbers in ``--ts-unit`` (``ms``, ``s`` or ``us``), ISO 8601 strings with an
offset as they are, ISO 8601 strings without one only with ``--tz``.

Every row is validated with the decoder the worker uses (same size cap, same "not too far in
the future" rule); rows that do not validate are not sent but counted per reason, and the first
20 are listed. Catalog items are sent first (keyed by SKU, to the compacted catalog topic), then
orders and clicks merged in event-time order, paced at ``speed`` x the original pace (0 = as
fast as the broker takes them).

End of input: a bounded history has no "later event" that would close its last window. After
the events, one **watermark marker** goes to every partition of the orders and clicks topics: a
record with the Kafka header ``repricer-watermark: <epoch ms>`` (and the value
``{"watermark": <epoch ms>}``), meaning "nothing older than this will come on this partition"
(the final watermark of a bounded source, as in Flink). Ingest advances that source partition
to the marker's time instead of decoding it as an event, so every replayed window closes.
"""
