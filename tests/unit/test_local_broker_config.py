"""Unit tests of the local broker: generated config, version table, cache checks, clear errors.

No broker is started here. The missing-tool tests run ``start_broker`` for real up to the point
where it must refuse; the missing-``mvn`` test needs a real ``java`` on PATH and fails without one.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from telemetry.localkafka import BrokerError, config, process, resolve, start_broker, stop_broker
from telemetry.settings import Settings, load_settings


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _free_port() -> int:
    """A port whose successor is free too (the controller listener uses port + 1)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65000 and process.port_is_free(config.Endpoint("127.0.0.1", port + 1)):
            return port
    raise AssertionError("no free port pair found")


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path / "data", "kafka_cache_dir": tmp_path / "cache"}
    values.update(overrides)
    return load_settings(**values)


# --- server.properties -----------------------------------------------------------------------


def test_server_properties_single_node_kraft_on_default_ports(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_bootstrap="127.0.0.1:9092")
    layout = config.BrokerLayout.for_settings(settings)
    props = _props(config.render_server_properties(settings, layout))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["log.dirs"] == str((tmp_path / "data").resolve() / "kafka" / "kraft-logs")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
        "offsets.topic.num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "4"
    assert int(props["log.cleaner.dedupe.buffer.size"]) <= 32 * 1024 * 1024
    assert int(props["log.retention.hours"]) > 0
    assert int(props["log.retention.bytes"]) > 0
    assert int(props["message.max.bytes"]) > settings.max_message_bytes


def test_server_properties_follow_a_custom_bootstrap(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_bootstrap="127.0.0.1:19092,127.0.0.1:29092", topic_partitions=2)
    props = _props(config.render_server_properties(settings, config.BrokerLayout.for_settings(settings)))

    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["num.partitions"] == "2"


@pytest.mark.parametrize(
    ("bootstrap", "expected"),
    [
        ("127.0.0.1:9092", config.Endpoint("127.0.0.1", 9092)),
        (" localhost:19092 , other:1", config.Endpoint("localhost", 19092)),
        ("PLAINTEXT://127.0.0.1:9092", config.Endpoint("127.0.0.1", 9092)),
        ("[::1]:9092", config.Endpoint("::1", 9092)),
    ],
)
def test_parse_bootstrap(bootstrap: str, expected: config.Endpoint) -> None:
    assert config.parse_bootstrap(bootstrap) == expected


def test_ipv6_endpoint_renders_with_brackets() -> None:
    assert str(config.Endpoint("::1", 9092)) == "[::1]:9092"


@pytest.mark.parametrize("bootstrap", ["", "127.0.0.1", "host:port", "127.0.0.1:0", "127.0.0.1:65535"])
def test_parse_bootstrap_rejects_garbage(bootstrap: str) -> None:
    with pytest.raises(BrokerError, match="host:port"):
        config.parse_bootstrap(bootstrap)


# --- JVM command -----------------------------------------------------------------------------


def test_heap_is_bounded_and_initial_heap_smaller() -> None:
    assert config.heap_flags("512m") == ["-Xmx512m", "-Xms128m"]
    assert config.heap_flags("256m") == ["-Xmx256m", "-Xms64m"]
    assert config.heap_flags("1g") == ["-Xmx1g", "-Xms128m"]
    for bad in ("512", "lots", "64m", "-1g"):
        with pytest.raises(BrokerError, match="TELEMETRY_KAFKA_HEAP"):
            config.heap_flags(bad)


def test_broker_command_runs_kafka_with_our_marker_and_log_config(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_heap="768m")
    layout = config.BrokerLayout.for_settings(settings)
    libs = tmp_path / "libs"
    argv = config.broker_command("/usr/bin/java", settings, layout, libs)

    assert argv[0] == "/usr/bin/java"
    assert "-Xmx768m" in argv
    assert argv[-4:] == ["-cp", f"{libs}/*", "kafka.Kafka", str(layout.server_properties)]
    assert f"-Dlog4j2.configurationFile={layout.log4j2_config}" in argv
    assert f"-D{config.VERSION_PROPERTY}={settings.kafka_version}" in argv


def test_kafka_3_uses_log4j1_config(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_version="3.9.1")
    layout = config.BrokerLayout.for_settings(settings)
    assert config.log_config_property("3.9.1", layout) == f"-Dlog4j.configuration=file:{layout.log4j1_config}"
    assert "log4j.rootLogger" in config.render_log_config("3.9.1")
    assert "<Configuration" in config.render_log_config("4.3.1")


def test_cluster_id_looks_like_kafkas() -> None:
    ids = {config.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)


# --- Maven resolution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "log4j"),
    [("4.0.0", "2.24.3"), ("4.1.1", "2.24.3"), ("4.1.2", "2.25.3"), ("4.2.0", "2.25.3"),
     ("4.2.1", "2.25.4"), ("4.3.1", "2.25.4")],
)  # fmt: skip
def test_log4j2_backend_by_kafka_version(version: str, log4j: str) -> None:
    backend = resolve.logging_backend(version)
    assert [a.artifact for a in backend] == ["log4j-slf4j-impl", "log4j-api", "log4j-core"]
    assert {a.version for a in backend} == {log4j}


def test_kafka_3_gets_reload4j() -> None:
    assert [str(a) for a in resolve.logging_backend("3.9.1")] == [
        "org.slf4j:slf4j-reload4j:1.7.36",
        "ch.qos.reload4j:reload4j:1.2.25",
    ]


def test_unsupported_versions_are_refused() -> None:
    for bad in ("2.8.0", "four"):
        with pytest.raises(BrokerError):
            resolve.logging_backend(bad)


def test_pom_declares_the_broker_and_backend_only() -> None:
    pom = resolve.render_pom("4.3.1")
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<version>4.3.1</version>" in pom
    assert "log4j-slf4j-impl" in pom and "log4j-core" in pom
    assert "kafka-tools" not in pom


def test_cache_without_manifest_or_with_missing_jar_is_incomplete(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "kafka_2.13-4.3.1.jar").write_bytes(b"jar")
    assert not resolve.is_complete(libs)  # interrupted download: jars but no manifest
    (libs / resolve.MANIFEST).write_text("kafka_2.13-4.3.1.jar\nkafka-clients-4.3.1.jar\n")
    assert not resolve.is_complete(libs)
    (libs / "kafka-clients-4.3.1.jar").write_bytes(b"jar")
    assert resolve.is_complete(libs)
    assert not resolve.is_complete(tmp_path / "absent")


def test_complete_cache_needs_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path)
    libs = resolve.libs_dir(settings)
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.3.1.jar").write_bytes(b"jar")
    (libs / resolve.MANIFEST).write_text("kafka_2.13-4.3.1.jar\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no mvn anywhere
    assert resolve.ensure_libs(settings) == libs


# --- clear errors ----------------------------------------------------------------------------


def test_start_without_java_on_path_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{_free_port()}")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))

    with pytest.raises(BrokerError) as caught:
        start_broker(settings, log=lambda _line: None)

    message = str(caught.value)
    assert message.startswith("java not found on PATH")
    assert "\n" not in message
    assert not (tmp_path / "cache").exists()  # refused before any download


def test_start_without_java_via_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "java" else real_which(name))
    settings = _settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{_free_port()}")
    with pytest.raises(BrokerError, match="java not found"):
        start_broker(settings, log=lambda _line: None)


def test_start_without_maven_and_empty_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = shutil.which("java")
    assert java is not None, "Java 17+ must be installed (apt-get install -y openjdk-17-jre-headless)"
    java_only = tmp_path / "bin"
    java_only.mkdir()
    (java_only / "java").symlink_to(os.path.realpath(java))
    monkeypatch.setenv("PATH", str(java_only))
    settings = _settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{_free_port()}")

    with pytest.raises(BrokerError, match=r"Maven \(mvn\) not found"):
        start_broker(settings, log=lambda _line: None)
    assert not resolve.libs_dir(settings).exists()


def test_stop_without_a_broker_is_a_noop_and_never_signals_strangers(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{_free_port()}")
    layout = config.BrokerLayout.for_settings(settings)
    layout.state_dir.mkdir(parents=True)
    layout.pid_file.write_text(f"{os.getpid()}\n")  # a pid that is alive but not our broker

    status = stop_broker(settings)

    assert not status.managed and status.pid is None
    assert status.detail.startswith("nothing to stop")
    assert not layout.pid_file.exists()  # stale pid file cleaned up; we are still alive


# --- log digest ------------------------------------------------------------------------------


def test_last_meaningful_line_prefers_the_exception_after_the_last_error(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    log.write_text(
        "[2026-01-01 00:00:00,000] INFO starting (kafka.Kafka$)\n"
        "[2026-01-01 00:00:01,000] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)\n"
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:9092: "
        "Address already in use.\n"
        "\tat kafka.network.Acceptor.openServerSocket(SocketServer.scala:1)\n"
        "Caused by: java.net.BindException: Address already in use\n"
        "[2026-01-01 00:00:02,000] INFO shutting down (kafka.Kafka$)\n"
    )
    assert process.last_meaningful_line(log).startswith("org.apache.kafka.common.KafkaException: Socket server")

    log.write_text("Error: Could not find or load main class kafka.Kafka\n")
    assert process.last_meaningful_line(log) == "Error: Could not find or load main class kafka.Kafka"
    assert process.last_meaningful_line(tmp_path / "missing.log") == "(no log)"
