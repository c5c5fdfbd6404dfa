"""The one typed, frozen configuration object; every field is read from ``REPRICER_<NAME>``.

Secrets are ``SecretStr`` and URLs with passwords are masked in ``repr``, so logging a
``Settings`` never leaks a credential.
"""

from __future__ import annotations

from typing import Literal, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PERCENT_ENCODE = (
    "clickhouse_url does not parse as scheme://user:password@host:port/db: "
    "percent-encode special characters (@ / ? # :) in the user name and password"
)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    >>> mask_url("clickhouse://app:s3cret@db:9000/repricer")
    'clickhouse://app:***@db:9000/repricer'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseSettings):
    """repricer configuration. Every field can be set as the env var ``REPRICER_<FIELD>``."""

    # hide_input_in_errors: a ValidationError would otherwise echo the rejected value (a URL
    # with its password, say) in its message
    model_config = SettingsConfigDict(
        env_prefix="REPRICER_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # --- connections -------------------------------------------------------------------
    app_id: str = Field(
        "repricer", description="Faust app id: consumer group and changelog prefix."
    )
    broker: str = Field(
        "kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), `kafka://host:port`."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka transport security."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_username: str | None = Field(None, description="SASL user name.")
    kafka_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    kafka_ssl_cafile: str | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates "
        "(`SSL`/`SASL_SSL`); default: the system CAs.",
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="Check that the broker's certificate matches its host name."
    )
    kafka_ssl_certfile: str | None = Field(
        None, description="Client certificate (PEM) for mutual TLS."
    )
    kafka_ssl_keyfile: str | None = Field(
        None, description="Private key (PEM) of the client certificate."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of the client key file (never logged)."
    )
    kafka_single_record_batches: bool = Field(
        False,
        description="Produce one record per Kafka record batch (slower). Only for brokers that "
        "miscount a partition's end offset, like Tansu 0.6.0 (it reports the first offset of the "
        "last batch + 1): Faust's table recovery stops there, so a restarted worker would restore "
        "stale state. The fault tests set it; never needed with Apache Kafka.",
    )
    topic_read_settle_s: float = Field(
        0.0,
        ge=0,
        description="Only for brokers whose end offsets lag batched writes, such as the Tansu "
        "broker of the local demo and the tests: the reads of a topic to its end (`dlq`, "
        "`holdout draw`, the conservation counts `report` reads back, and the worker's read of "
        "the catalog and control before the events after each assignment) then also take records "
        "past the end offsets, until the topic is quiet for this many seconds. 0 (off): read to "
        "the end offsets taken when the read starts, right for Apache Kafka; never set it there "
        "(a busy topic is never quiet).",
    )
    kafka_session_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Consumer-group session timeout: how soon a dead worker's partitions move.",
    )
    kafka_commit_interval_s: float = Field(
        2.8,
        gt=0,
        description="How often the window agent commits its offsets (Faust's commit interval): "
        "longer means more events replayed after a crash (dropped as replays), never lost.",
    )
    clickhouse_url: SecretStr = Field(
        SecretStr("chdb://.repricer/chdb"),
        description="`clickhouse://user:pass@host:9000/db`, "
        "`clickhouses://user:pass@host:9440/db?ca_certs=/ca.pem` (TLS) or `chdb:///path` "
        "(embedded). Percent-encode special characters of the password; never logged.",
    )
    store: str = Field("memory://", description="Faust table store (`memory://` or `rocksdb://`).")
    data_dir: str = Field(".repricer/faust", description="Faust data directory.")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop of the worker; uvloop is about 1.35x faster for Faust."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text, or one JSON object per line (ts, level, logger, pid, msg, "
        "and sku/partition/offset/topic/reason where they apply).",
    )
    web_enabled: bool = Field(
        False, description="Serve the worker's web server (`/metrics`, `/livez`, `/readyz`, ...)."
    )
    web_host: str = Field(
        "127.0.0.1",
        description="Address the web server binds: `0.0.0.0` inside a container, so other "
        "containers (Prometheus, the healthcheck) reach it.",
    )
    web_port: int = Field(6066, description="Port of the worker's web server.")
    health_stall_s: float = Field(
        60.0,
        gt=0,
        description="`/health` is 503 (and `repricer_stalled` is 1) when no event was "
        "processed for this long while consumer lag is > 0.",
    )
    health_sink_stall_s: float = Field(
        60.0,
        gt=0,
        description="`/health` is 503 (and `repricer_sink_stuck` is 1) when sink rows are "
        "pending and no ClickHouse insert succeeded for this long; never a liveness failure.",
    )

    # --- topics ----------------------------------------------------------------------
    topic_orders: str = Field("orders", description="Orders in (JSON `Order`).")
    topic_clicks: str = Field("clickstream", description="Clickstream in (JSON `Click`).")
    topic_catalog: str = Field(
        "catalog", description="Compacted catalog in (`CatalogItem`, key SKU)."
    )
    topic_price_changes: str = Field("price-changes", description="`PriceChange` v1 events out.")
    topic_shadow: str = Field(
        "price-changes-shadow",
        description="`ShadowDecision` out: what the policy would change for SKUs it does not "
        "price (shadow mode, holdout).",
    )
    topic_prices: str = Field(
        "prices", description="Compacted current price per SKU out (`PriceState`)."
    )
    topic_control: str = Field(
        "pricing-control", description="Operator commands in (`ControlCommand`)."
    )
    topic_dlq: str = Field("repricer-dlq", description="Dead letters out (`DeadLetter`).")
    partitions: int = Field(
        4, ge=1, description="Partitions of repricer's own and internal topics."
    )
    topic_replication_factor: int = Field(
        1,
        ge=1,
        description="Replicas of every topic repricer creates (public, internal, changelogs): "
        "1 fits a single broker; 3 on a real cluster.",
    )
    topic_min_insync_replicas: int = Field(
        1,
        ge=1,
        description="`min.insync.replicas` of the topics repricer creates (at most the "
        "replication factor; 2 with 3 replicas).",
    )
    max_payload_bytes: int = Field(
        64 * 1024, ge=256, description="Payloads larger than this go to the DLQ (not decoded)."
    )
    max_event_lead_s: float = Field(
        300.0,
        gt=0,
        description="Events timestamped further ahead of the worker's wall clock go to the DLQ "
        "(`future_timestamp`): one would drag the watermark ahead and make real events late.",
    )

    # --- windows ---------------------------------------------------------------------
    window_s: int = Field(60, ge=1, description="Tumbling event-time window size, seconds.")
    lateness_s: int = Field(
        10, ge=0, description="Allowed lateness before a window closes, seconds."
    )
    idle_source_s: float = Field(
        10.0,
        gt=0,
        description="Wall-clock seconds without events after which a source partition stops "
        "holding windows open (it is advanced to the newest event time).",
    )

    unsafe_disable_replay_dedup: bool = Field(
        False,
        description="For fault-injection tests only: fold replayed events again (breaks counts).",
    )

    # --- pricing and guardrails -------------------------------------------------------
    objective: Literal["profit", "revenue"] = Field(
        "profit", description="What the policy maximises."
    )
    min_margin: float = Field(
        0.05, ge=0, description="Floor is max(min_price, cost*(1+min_margin))."
    )
    max_step: float = Field(0.05, gt=0, le=1, description="Largest relative move per decision.")
    min_change: float = Field(
        0.005, ge=0, description="Moves smaller than this fraction are skipped."
    )
    cooldown_s: int = Field(
        120, ge=0, description="Minimum event-time seconds between changes of one SKU."
    )
    rounding: Literal["cent", "ninety_nine"] = Field(
        "cent", description="Price grid: whole cents, or x.99 endings where the range allows."
    )
    mode: Literal["live", "shadow"] = Field(
        "live",
        description="Who prices by default: `live` publishes the policy's changes; `shadow` "
        "decides and records them (shadow topic, ClickHouse `shadow_decisions`) but publishes "
        "no price. Per SKU or category: see Going live in the README.",
    )
    holdout_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Share of SKUs kept at their price as the control group: those whose "
        "hash of REPRICER_HOLDOUT_SALT and SKU falls below it (see README, Going live).",
    )
    holdout_salt: str = Field(
        "repricer-holdout", description="Salt of the holdout draw; a new salt draws a new group."
    )
    holdout_skus: str = Field(
        "", description="Comma-separated SKUs always in the holdout group (besides the fraction)."
    )
    holdout_file: str = Field(
        "",
        description="File of SKUs always in the holdout group, one a line (the stratified "
        "draw of Going live in the README writes one); added to REPRICER_HOLDOUT_SKUS and the "
        "fraction. A missing or unreadable file, or one listing no SKU, stops start-up.",
    )
    max_changes_per_sku: int = Field(
        0,
        ge=0,
        description="Per-SKU rate limit: at most this many policy price changes of one SKU in "
        "any REPRICER_CHANGE_PERIOD_S of event time, counted from the SKU's durable state (it "
        "holds across workers and restarts); 0: no limit beyond the cooldown.",
    )
    change_period_s: int = Field(
        86_400, ge=1, description="The period of REPRICER_MAX_CHANGES_PER_SKU, in seconds."
    )
    rate_limit_per_window: int = Field(
        10_000,
        ge=0,
        description="Catalogue-wide cap: at most this many policy price changes per SKU-events "
        "partition at each window close, so at most REPRICER_PARTITIONS times this per window "
        "across all workers (whoever owns the partitions).",
    )
    policy_version: str = Field("model-v2", description="Recorded in every PriceChange.")
    restock_s: int = Field(
        259_200,
        ge=0,
        description="Inventory awareness: a SKU with known stock (catalog `stock`) is priced so "
        "that stock lasts this many seconds from when it arrived or was last raised (3 days by "
        "default), then clears at the profit optimum; 0 ignores stock.",
    )
    thompson_hold_s: int = Field(
        3600,
        ge=1,
        description="How long (event time) each SKU keeps one elasticity draw of the Thompson "
        "sampler before drawing again: shorter explores more, longer changes prices less often.",
    )
    pool_experiment_delta: float = Field(
        0.15,
        ge=0,
        le=0.5,
        description="Sparse SKUs (too few sales to learn alone) move their log price by this "
        "much either way, a random sign per SKU and REPRICER_POOL_EXPERIMENT_BLOCK_S, while "
        "their pool's mean elasticity is unsure and learning it pays (reason `pool_experiment`; "
        "see Pricing per demand family in the README); 0: never, they keep the catalogue price "
        "unless sure.",
    )
    pool_experiment_block_s: int = Field(
        10_800,
        ge=60,
        description="How long (event time) a SKU keeps one sign of the pool experiment: longer "
        "changes prices less often and learns more slowly.",
    )
    salvage: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Worth of a unit still unsold after restock_s, as a fraction of its cost "
        "(1: stock keeps, so overstock is not cleared below the profit optimum).",
    )
    lstm: bool = Field(True, description="Score the ONNX LSTM alongside River (ensemble).")
    river_regressor: Literal["bayes", "linear", "pa"] = Field(
        "bayes", description="Pooled River regressor (see `repricer bench forecast`)."
    )

    # --- ClickHouse sink ---------------------------------------------------------------
    ingest_batch_events: int = Field(
        5_000, ge=1, description="Input records decoded, forwarded and committed per batch at most."
    )
    sink_batch_rows: int = Field(10_000, ge=1, description="Rows per ClickHouse insert at most.")
    sink_flush_s: float = Field(1.0, gt=0, description="Insert at least this often (seconds).")
    sink_retry_max_s: float = Field(
        10.0, gt=0, description="Largest backoff between insert retries."
    )
    shutdown_timeout_s: float = Field(
        8.0,
        ge=3,
        description="On SIGTERM/SIGINT the worker commits what it finished and exits within "
        "this many seconds; past it, it exits with code 75 (nothing uncommitted is lost: it is "
        "read again on restart).",
    )

    @field_validator("broker")
    @classmethod
    def _broker_scheme(cls, v: str) -> str:
        if "://" not in v:
            v = "kafka://" + v
        return v

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_url_parses(cls, v: SecretStr) -> SecretStr:
        # An unencoded `@`, `/`, `?` or `#` in the password would make the URL parse with part
        # of the password in the host or path, where masking cannot find it.
        url = v.get_secret_value()
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in ("clickhouse", "clickhouses", "chdb"):
            raise ValueError(
                "clickhouse_url must start with clickhouse://, clickhouses:// or chdb://"
            )
        if scheme.lower() != "chdb":
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError(_PERCENT_ENCODE) from None
            if "@" in url[len(scheme) + 3 + len(parts.netloc) :] or parts.netloc.count("@") > 1:
                raise ValueError(_PERCENT_ENCODE)
        return v

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_username and self.kafka_password
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "kafka_username and kafka_password"
            )
        return self

    @model_validator(mode="after")
    def _insync_fits_replicas(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"topic_min_insync_replicas ({self.topic_min_insync_replicas}) is more than "
                f"topic_replication_factor ({self.topic_replication_factor}): no write could "
                "ever succeed"
            )
        return self

    @property
    def bootstrap(self) -> str:
        """``host:port[,host:port]`` for kafka-python/aiokafka clients."""
        return ",".join(u.split("://", 1)[-1] for u in self.broker.split(";"))

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000

    @property
    def lateness_ms(self) -> int:
        return self.lateness_s * 1000

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        for k, v in super().__repr_args__():
            if k == "clickhouse_url" and isinstance(v, SecretStr):
                yield k, mask_url(v.get_secret_value())
            else:
                yield k, v


def _type_name(annotation: object) -> str:
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "none" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def settings_reference() -> str:
    """Markdown table of every setting: env var, type, default, meaning (for the README)."""
    rows = ["| env var | type | default | meaning |", "|---|---|---|---|"]
    for name, f in Settings.model_fields.items():
        default = f.default
        if isinstance(default, SecretStr):
            default = mask_url(default.get_secret_value())
        typ = _type_name(f.annotation)
        doc = (f.description or "").replace("|", "\\|")
        rows.append(f"| `REPRICER_{name.upper()}` | {typ} | `{default}` | {doc} |")
    return "\n".join(rows)


def update_readme(path: str = "README.md") -> None:
    """Rewrite the generated settings table between its markers in the README."""
    from pathlib import Path

    start, end = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"
    text = Path(path).read_text()
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    Path(path).write_text(f"{head}{start}\n{settings_reference()}\n{end}{tail}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--update-readme"]:
        update_readme()
    else:
        print(settings_reference())
