"""Pure configuration of the local single-node KRaft broker: paths, server.properties, JVM flags.

Nothing here touches the network or starts a process; every function is deterministic given its
arguments (except :func:`new_cluster_id`), so the unit tests check the generated text directly.

Ports: the PLAINTEXT listener binds the host:port of the first ``kafka_bootstrap`` entry
(default ``127.0.0.1:9092``); the KRaft CONTROLLER listener binds the same host on port + 1
(default ``9093``). Both must be free before the broker starts.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from telemetry.localkafka.errors import BrokerError
from telemetry.settings import Settings

#: Largest record batch the local broker accepts. Well above the worker's ``max_message_bytes``
#: so that the worker, not the broker, decides what is oversized (and dead-letters it).
MESSAGE_MAX_BYTES = 8 * 1024 * 1024
#: Marker system property on the broker's command line: identifies our JVMs and their version.
VERSION_PROPERTY = "telemetry.kafka.version"

_HEAP_RE = re.compile(r"^(\d+)([kKmMgG])$")
_UNIT = {"k": 1024, "m": 1024**2, "g": 1024**3}


@dataclass(frozen=True)
class Endpoint:
    """One ``host:port``; ``str()`` gives the form Kafka listeners and clients accept."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_bootstrap(bootstrap: str) -> Endpoint:
    """The first entry of a comma-separated bootstrap list as an :class:`Endpoint`.

    Accepts ``host:port``, ``[v6addr]:port`` and an optional ``PLAINTEXT://`` style prefix.
    Raises :class:`BrokerError` when the entry has no valid port.
    """
    first = bootstrap.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    if first.startswith("["):
        host, _, rest = first[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = first.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65535:
        raise BrokerError(
            f"cannot read host:port from TELEMETRY_KAFKA_BOOTSTRAP={bootstrap!r} "
            "(expected e.g. 127.0.0.1:9092, port below 65535)"
        )
    return Endpoint(host, int(port_text))


def controller_endpoint(bootstrap: Endpoint) -> Endpoint:
    """The KRaft controller listener: same host as the broker listener, port + 1."""
    return Endpoint(bootstrap.host, bootstrap.port + 1)


@dataclass(frozen=True)
class BrokerLayout:
    """Files of one local broker, all under ``<data_dir>/kafka`` (absolute paths)."""

    state_dir: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> BrokerLayout:
        return cls(settings.data_dir.expanduser().resolve() / "kafka")

    @property
    def server_properties(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def log4j2_config(self) -> Path:
        return self.state_dir / "log4j2.xml"

    @property
    def log4j1_config(self) -> Path:
        return self.state_dir / "log4j.properties"

    @property
    def kraft_dir(self) -> Path:
        """``log.dirs``: partitions and the KRaft metadata log; holds ``meta.properties`` once formatted."""
        return self.state_dir / "kraft-logs"

    @property
    def meta_properties(self) -> Path:
        return self.kraft_dir / "meta.properties"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def broker_log(self) -> Path:
        """The JVM's stdout and stderr (the log4j console appender writes here)."""
        return self.state_dir / "broker.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"


def render_server_properties(settings: Settings, layout: BrokerLayout) -> str:
    """The ``server.properties`` of a single-node KRaft broker+controller for ``settings``.

    Raises :class:`BrokerError` if the bootstrap address cannot be parsed.
    """
    broker = parse_bootstrap(settings.kafka_bootstrap)
    controller = controller_endpoint(broker)
    props: list[tuple[str, object]] = [
        ("process.roles", "broker,controller"),
        ("node.id", 1),
        ("controller.quorum.voters", f"1@{controller}"),
        ("listeners", f"PLAINTEXT://{broker},CONTROLLER://{controller}"),
        ("advertised.listeners", f"PLAINTEXT://{broker}"),
        ("inter.broker.listener.name", "PLAINTEXT"),
        ("controller.listener.names", "CONTROLLER"),
        ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"),
        ("log.dirs", layout.kraft_dir),
        # one node: every internal topic has one replica
        ("offsets.topic.replication.factor", 1),
        ("offsets.topic.num.partitions", 1),
        ("transaction.state.log.replication.factor", 1),
        ("transaction.state.log.min.isr", 1),
        ("share.coordinator.state.topic.replication.factor", 1),
        ("share.coordinator.state.topic.min.isr", 1),
        ("default.replication.factor", 1),
        ("min.insync.replicas", 1),
        # development conveniences
        ("group.initial.rebalance.delay.ms", 0),
        ("auto.create.topics.enable", "true"),
        ("num.partitions", settings.topic_partitions),
        ("message.max.bytes", MESSAGE_MAX_BYTES),
        ("log.cleaner.dedupe.buffer.size", 16 * 1024 * 1024),
        ("num.network.threads", 2),
        ("num.io.threads", 4),
        ("num.recovery.threads.per.data.dir", 1),
        # retention: three days or 512 MiB per partition, whichever comes first
        ("log.retention.hours", 72),
        ("log.retention.bytes", 512 * 1024 * 1024),
        ("log.segment.bytes", 64 * 1024 * 1024),
        ("log.retention.check.interval.ms", 60_000),
    ]
    header = (
        "# Generated by telemetry.localkafka on every start; edits are overwritten.\n"
        f"# Kafka {settings.kafka_version}, single-node KRaft (broker + controller).\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in props)


def render_log_config(version: str) -> str:
    """Logging configuration for ``version``: log4j2 XML for 4.x, log4j 1 properties for 3.x.

    Everything goes to the console (stdout), which the broker's launcher sends to ``broker.log``.
    """
    if version.startswith("3."):
        return (
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.state.change.logger=WARN\n"
        )
    return """<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by telemetry.localkafka on every start; edits are overwritten. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="STDOUT"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


def log_config_path(version: str, layout: BrokerLayout) -> Path:
    """Where :func:`render_log_config` output is written for ``version``."""
    return layout.log4j1_config if version.startswith("3.") else layout.log4j2_config


def log_config_property(version: str, layout: BrokerLayout) -> str:
    """The JVM ``-D`` flag pointing the logging backend of ``version`` at its config file."""
    path = log_config_path(version, layout)
    if version.startswith("3."):
        return f"-Dlog4j.configuration=file:{path}"
    return f"-Dlog4j2.configurationFile={path}"


def heap_flags(heap: str) -> list[str]:
    """``-Xmx<heap>`` and a smaller ``-Xms`` (a quarter, at most 128m, at least 16m).

    Raises :class:`BrokerError` unless ``heap`` looks like ``512m`` / ``1g`` / ``262144k``
    and is at least 128m.
    """
    match = _HEAP_RE.match(heap.strip())
    if not match:
        raise BrokerError(f"TELEMETRY_KAFKA_HEAP={heap!r} is not a JVM size like 512m or 1g")
    size = int(match.group(1)) * _UNIT[match.group(2).lower()]
    if size < 128 * 1024**2:
        raise BrokerError(f"TELEMETRY_KAFKA_HEAP={heap!r} is too small; the broker needs at least 128m")
    initial_mb = max(16, min(128, size // 4 // 1024**2))
    return [f"-Xmx{heap.strip()}", f"-Xms{initial_mb}m"]


def jvm_flags(settings: Settings, layout: BrokerLayout) -> list[str]:
    """JVM options of the broker (heap, GC as in ``kafka-server-start.sh``, logging, marker)."""
    return [
        *heap_flags(settings.kafka_heap),
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        log_config_property(settings.kafka_version, layout),
        f"-Dkafka.logs.dir={layout.state_dir}",
        f"-D{VERSION_PROPERTY}={settings.kafka_version}",
    ]


def broker_command(java: str, settings: Settings, layout: BrokerLayout, libs: Path) -> list[str]:
    """argv of ``java ... -cp 'libs/*' kafka.Kafka server.properties`` (no shell involved)."""
    return [
        java,
        *jvm_flags(settings, layout),
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(layout.server_properties),
    ]


def format_command(java: str, settings: Settings, layout: BrokerLayout, libs: Path, cluster_id: str) -> list[str]:
    """argv of ``kafka.tools.StorageTool format -t <cluster id> -c server.properties``."""
    return [
        java,
        "-Xmx256m",
        "-Djava.awt.headless=true",
        log_config_property(settings.kafka_version, layout),
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(layout.server_properties),
    ]


def new_cluster_id() -> str:
    """A random Kafka cluster id: a UUID in unpadded URL-safe base64 (22 chars), as Kafka makes them."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like command-line flags
            return text
