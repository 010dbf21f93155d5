"""The one settings object, read from ``TELEMETRY_*`` environment variables.

Every field has a default that runs locally with no configuration at all: a broker on
``127.0.0.1:9092`` (started by ``telemetry kafka start``) and an embedded chDB database
inside ``TELEMETRY_DATA_DIR``. The README's configuration table documents each variable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from telemetry.otlp.genai import SpanMapping


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> object:
    """Seconds from ``300``, ``"300"``, ``"90s"``, ``"5m"``, ``"1h"``, ``"250ms"``; other values pass
    through to pydantic's float validation (which then names the bad variable)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    return value


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A duration in seconds; the variable may say ``300``, ``90s``, ``5m``, ``1h``."""


class Settings(BaseSettings):
    """Process-wide configuration. Frozen: build a new one to change it (tests do)."""

    model_config = SettingsConfigDict(env_prefix="TELEMETRY_", frozen=True, extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(Path(".telemetry"), description="Local state: chDB data, broker logs, caches.")
    env: str = Field("local", description="Deployment environment, an alert label.")

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    topic_prefix: str = Field("llm.", description="Prefix of every topic this product reads or writes.")
    consumer_group: str = Field("llm-telemetry", description="Consumer group id of the worker.")
    topic_partitions: int = Field(4, ge=1, description="Partitions of topics the worker creates.")
    topic_replication_factor: int = Field(1, ge=1, description="Replication factor of topics the worker creates.")
    kafka_session_timeout: Seconds = Field(
        10.0, ge=6, le=300,
        description="Consumer group session timeout: how long a dead worker keeps its partitions before the others take them.",
    )  # fmt: skip
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    # --- local broker (telemetry kafka start) --------------------------------------------
    kafka_version: str = Field("4.3.1", description="Apache Kafka version the local broker runs.")
    kafka_heap: str = Field("512m", description="JVM heap (-Xmx) of the local broker.")
    kafka_cache_dir: Path = Field(
        Path.home() / ".cache" / "llm-telemetry" / "kafka",
        description="Per-version cache of the broker's jars, outside the repository.",
    )

    # --- ClickHouse ----------------------------------------------------------------------
    clickhouse_dsn: str | None = Field(
        None, description="chdb:///path (embedded) or http(s)://user:pass@host:port; default: chDB in data_dir."
    )
    clickhouse_database: str = Field("llm_telemetry", description="Database holding every table.")
    clickhouse_http_port: int = Field(8123, ge=1, le=65535, description="HTTP port of `telemetry clickhouse start`.")
    clickhouse_tcp_port: int = Field(9000, ge=1, le=65535, description="Native TCP port of `telemetry clickhouse start`.")

    # --- worker --------------------------------------------------------------------------
    ingest_mode: Literal["batch", "agents"] = Field(
        "batch", description="batch: one aiokafka batch consumer; agents: one Faust agent per topic."
    )
    batch_size: int = Field(10000, ge=1, description="Most events per batch (one insert per table).")
    batch_seconds: float = Field(1.0, gt=0, description="Longest wait to fill a batch.")
    join_cache_size: int = Field(500_000, ge=1000, description="Requests kept in memory for the join.")
    join_horizon_hours: float = Field(24.0, gt=0, description="Verdicts later than this are flagged late.")
    max_message_bytes: int = Field(1_000_000, ge=1024, description="Larger messages are dead-lettered.")
    web_port: int = Field(6066, description="Worker's HTTP port (stats, health, live SQL).")
    web_host: str = Field("127.0.0.1", description="Address the worker's HTTP port binds to.")
    web_token: SecretStr | None = Field(
        None, description="Bearer token the worker's HTTP pages require (`Authorization: Bearer ...`); unset: none."
    )
    max_future_skew: Seconds = Field(
        300.0, ge=0, description="Events dated more than this ahead of the worker's clock are dead-lettered (ts_in_future)."
    )
    event_time_idle_seconds: Seconds = Field(
        30.0, gt=0, description="After this long with no events, the detectors' clock advances with wall time."
    )
    max_routes: int = Field(2000, ge=1, description="Routes the detectors track; more go to the `__overflow__` route.")
    max_models_per_route: int = Field(
        20, ge=1, description="Models tracked per route by the detectors; more go to the `__overflow__` model."
    )
    max_teams: int = Field(500, ge=1, description="Teams tracked by the budget detector; more go to `__overflow__`.")
    sql_max_seconds: Seconds = Field(30.0, gt=0, description="Analyst SQL: longest run time of one query.")
    sql_max_memory_mb: int = Field(1024, ge=16, description="Analyst SQL: most memory one query may use, MiB.")
    sql_max_threads: int = Field(1, ge=1, description="Analyst SQL: threads one query may use.")
    sql_max_result_rows: int = Field(100_000, ge=1, description="Analyst SQL: most rows returned (more: truncated).")
    delivery_max_age_hours: float = Field(
        24.0, gt=0, description="A notification not delivered to a channel within this time is marked failed."
    )
    # --- OpenTelemetry (OTLP from the Collector's Kafka exporter) ---------------------------
    otlp_spans_topic: str = Field(
        "otlp_spans", description="Topic of OTLP traces (the Collector's Kafka exporter default; no prefix). Empty: not read."
    )
    otlp_logs_topic: str = Field(
        "otlp_logs", description="Topic of OTLP logs (evaluation records; no prefix). Empty: not read."
    )
    otlp_encoding: Literal["auto", "otlp_proto", "otlp_json"] = Field(
        "auto", description="Encoding of OTLP messages; auto: told apart per message (JSON starts with `{`)."
    )
    otlp_operations: str = Field(
        "chat,text_completion,generate_content,embeddings",
        description="GenAI operations (`gen_ai.operation.name`) that become requests, comma separated.",
    )
    otlp_route_attributes: str = Field(
        "llm.route,gen_ai.agent.name",
        description="Attributes naming a span's route, in order (span, then resource); none: `<service.name>.<operation>`.",
    )
    otlp_team_attributes: str = Field("llm.team,team", description="Attributes naming a span's team, in order.")
    otlp_prompt_version_attributes: str = Field(
        "llm.prompt.version,llm.prompt_template.version,traceloop.prompt.version",
        description="Attributes naming a span's prompt version, in order.",
    )
    otlp_experiment_attributes: str = Field("llm.experiment", description="Attributes naming a span's experiment arm.")
    otlp_evaluation_kind_attributes: str = Field(
        "llm.evaluation.kind",
        description="Attributes of an evaluation giving its verdict kind (online, human, closed_book, gold_context, ...).",
    )

    tier_down_review_days: float = Field(
        182.0, gt=0, description="Days between two scheduled tier-down reviews (a TierDownReview notification)."
    )
    prices_file: Path | None = Field(None, description="TOML price overrides for private/negotiated models.")
    routes_file: Path | None = Field(None, description="TOML per-route config: owners, SLOs, budgets, channels.")

    @property
    def requests_topic(self) -> str:
        return f"{self.topic_prefix}requests"

    @property
    def verdicts_topic(self) -> str:
        return f"{self.topic_prefix}verdicts"

    @property
    def shard_requests_topic(self) -> str:
        """Internal: requests re-keyed by request id (the repartition stage writes, the join reads)."""
        return f"{self.topic_prefix}internal.requests"

    @property
    def shard_verdicts_topic(self) -> str:
        """Internal: verdicts re-keyed by request id, co-partitioned with the requests."""
        return f"{self.topic_prefix}internal.verdicts"

    @property
    def facts_topic(self) -> str:
        """Internal: facts of stored batches for the detection owner (one partition)."""
        return f"{self.topic_prefix}internal.facts"

    @property
    def join_group(self) -> str:
        return f"{self.consumer_group}.join"

    @property
    def detect_group(self) -> str:
        return f"{self.consumer_group}.detect"

    @property
    def deadletter_topic(self) -> str:
        return f"{self.topic_prefix}deadletter"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}alerts"

    @property
    def request_topics(self) -> frozenset[str]:
        """Topics whose events are requests: the detectors' clock follows them (OTLP traces carry
        the evaluations attached to their spans too, timed within the span)."""
        return frozenset(t for t in (self.requests_topic, self.otlp_spans_topic) if t)

    @property
    def otlp_topics(self) -> list[str]:
        """The OTLP topics read (traces first), without the disabled ones."""
        return [t for t in (self.otlp_spans_topic, self.otlp_logs_topic) if t]

    def span_mapping(self) -> SpanMapping:
        """How spans map to requests (the ``TELEMETRY_OTLP_*`` attribute lists)."""
        from telemetry.otlp.genai import SpanMapping

        return SpanMapping(
            route=_names(self.otlp_route_attributes),
            team=_names(self.otlp_team_attributes),
            prompt_version=_names(self.otlp_prompt_version_attributes),
            experiment=_names(self.otlp_experiment_attributes),
            evaluation_kind=_names(self.otlp_evaluation_kind_attributes),
            operations=frozenset(_names(self.otlp_operations)),
        )

    @property
    def resolved_clickhouse_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def is_embedded_clickhouse(self) -> bool:
        return self.resolved_clickhouse_dsn.startswith("chdb://")

    def kafka_client_options(self) -> dict[str, object]:
        """Security options passed through to every aiokafka client (producer, consumer, admin)."""
        options: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_ssl_cafile or self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
            )
        return options


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
