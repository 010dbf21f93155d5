"""``deploy/otel-collector.yaml`` cannot drift from the workers or from ``docker-compose.yml``.

Offline: no Collector binary, no Docker, no broker. The Collector configuration is read with
PyYAML and checked for what the Collector itself would refuse (a pipeline naming a component
that is not defined) and for what it would accept but the workers would not: a topic other than
the one the workers read, an encoding they do not decode, a batch that can become a Kafka message
larger than the broker or the worker takes, a broker address the Collector's container cannot
reach. The schema itself (key names of the kafka exporter, v0.165) is not checked here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from telemetry.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "otel-collector.yaml"
COMPOSE = REPO / "docker-compose.yml"

SERVICE = "otel-collector"
IMAGE = re.compile(r"^otel/opentelemetry-collector-contrib:(\d+\.\d+\.\d+)$")
# `${env:NAME}` or `${env:NAME:-default}`: the Collector's environment variable provider.
ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\}$")
ENCODINGS = {"otlp_proto", "otlp_json"}  # what the workers decode (detected per message)
AUTO = "auto"  # the worker's otlp_encoding that tells the two apart per message
SIGNALS = {"traces": "otlp_spans_topic", "logs": "otlp_logs_topic"}  # pipeline -> Settings field
FALLBACK_TOPICS = {"otlp_spans_topic": "otlp_spans", "otlp_logs_topic": "otlp_logs"}
BROKER_DEFAULT_MESSAGE_MAX_BYTES = 1_048_588  # Kafka's message.max.bytes default
ITEM_BUDGET_BYTES = 2048  # one span or log record in OTLP, its share of resource and scope included
MIN_PROTOCOL = (2, 1)  # the oldest protocol Kafka 4.x brokers still accept (KIP-896)


# -- helpers -----------------------------------------------------------------------------------------
def config() -> dict[str, Any]:
    data = yaml.safe_load(CONFIG.read_text())
    assert isinstance(data, dict), "deploy/otel-collector.yaml is not a mapping"
    return data


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved, as Compose does
    assert isinstance(data, dict)
    return data


def kind(component_id: str) -> str:
    """The type of a component id: ``batch/traces`` -> ``batch``."""
    return component_id.split("/", 1)[0]


def resolve(value: object, env: dict[str, str]) -> str:
    """A value as the Collector resolves it with ``env`` as its environment."""
    text = str(value)
    match = ENV_REF.match(text)
    if not match:
        assert "${" not in text, f"unsupported substitution in {text!r}: use ${{env:NAME:-default}}"
        return text
    name, default = match.groups()
    if name in env:
        return env[name]
    assert default is not None, f"{text!r} has no default: the Collector fails to start without {name}"
    return default


def pipelines() -> dict[str, dict[str, list[str]]]:
    found = config()["service"]["pipelines"]
    assert isinstance(found, dict)
    return found


def kafka_exporter(pipeline: str) -> dict[str, Any]:
    """The one kafka exporter of a pipeline, with its settings."""
    names = [name for name in pipelines()[pipeline]["exporters"] if kind(name) == "kafka"]
    assert len(names) == 1, f"pipeline {pipeline} must export to exactly one kafka exporter, found {names}"
    settings = config()["exporters"][names[0]]
    assert isinstance(settings, dict), f"exporter {names[0]} has no settings"
    return settings


def worker_topic(field: str) -> str:
    """The worker's default topic, from the Settings field once it exists."""
    info = Settings.model_fields.get(field)
    if info is None:
        return FALLBACK_TOPICS[field]
    assert isinstance(info.default, str) and info.default, f"Settings.{field} has no string default"
    return info.default


def worker_encodings() -> set[str]:
    """The encodings the workers read as configured by default: both, unless otlp_encoding pins one."""
    info = Settings.model_fields.get("otlp_encoding")
    if info is None:
        return ENCODINGS
    choices = set(get_args(info.annotation))
    assert choices - {AUTO} == ENCODINGS, f"Settings.otlp_encoding offers {sorted(choices)}: update this test"
    return ENCODINGS if info.default == AUTO else {str(info.default)}


def collector_service() -> dict[str, Any]:
    services = compose()["services"]
    assert SERVICE in services, f"docker-compose.yml has no {SERVICE} service"
    service = services[SERVICE]
    assert isinstance(service, dict)
    return service


def collector_env() -> dict[str, str]:
    env = collector_service().get("environment", {})
    assert isinstance(env, dict), "give the collector's environment as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def worker_bootstrap() -> set[str]:
    workers = [s for s in compose()["services"].values() if s.get("command") == ["telemetry", "worker"]]
    assert workers, "docker-compose.yml runs no worker"
    return {str(w["environment"]["TELEMETRY_KAFKA_BOOTSTRAP"]) for w in workers}


def kafka_env() -> dict[str, str]:
    return {str(k): str(v) for k, v in compose()["services"]["kafka"]["environment"].items()}


def version(text: str) -> tuple[int, ...]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    assert match, f"not a version: {text!r}"
    return tuple(int(part or 0) for part in match.groups())


def published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port of each published port."""
    ports = {}
    for entry in service.get("ports", []):
        *_, host_port, container_port = str(entry).split(":")
        ports[int(container_port.split("/")[0])] = int(host_port)
    return ports


def memory_limits_mib() -> tuple[int, int]:
    """(hard limit, soft limit) of the memory_limiter, in MiB."""
    settings = config()["processors"]["memory_limiter"]
    hard = int(settings["limit_mib"])
    spike = int(settings.get("spike_limit_mib", hard // 5))
    assert 0 < spike < hard, "spike_limit_mib must be below limit_mib"
    return hard, hard - spike


# -- the configuration on its own ----------------------------------------------------------------------
def test_pipelines_name_defined_components() -> None:
    data = config()
    assert set(SIGNALS) <= pipelines().keys(), f"the Collector must have the pipelines {sorted(SIGNALS)}"
    for name, pipeline in pipelines().items():
        for section in ("receivers", "processors", "exporters"):
            used = pipeline.get(section, [])
            assert used or section == "processors", f"pipeline {name} has no {section}"
            undefined = [c for c in used if c not in (data.get(section) or {})]
            assert not undefined, f"pipeline {name} names {section} that are not defined: {undefined}"
            assert len(used) == len(set(used)), f"pipeline {name} names a component twice in {section}"
    for extension in data.get("service", {}).get("extensions", []):
        assert extension in (data.get("extensions") or {}), f"extension {extension} is not defined"


def test_memory_limiter_first_then_batch() -> None:
    for name, pipeline in pipelines().items():
        kinds = [kind(p) for p in pipeline.get("processors", [])]
        assert kinds and kinds[0] == "memory_limiter", f"pipeline {name}: memory_limiter must come first, got {kinds}"
        assert "batch" in kinds[1:], f"pipeline {name}: a batch processor must follow memory_limiter"


def test_otlp_receiver_listens_on_every_interface() -> None:
    protocols = config()["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    for name, pipeline in pipelines().items():
        assert "otlp" in pipeline["receivers"], f"pipeline {name} does not read the OTLP receiver"


@pytest.mark.parametrize(("pipeline", "field"), sorted(SIGNALS.items()))
def test_topics_are_the_ones_the_workers_read(pipeline: str, field: str) -> None:
    exporter = kafka_exporter(pipeline)
    signal = exporter.get(pipeline)
    assert isinstance(signal, dict), f"the kafka exporter sets no `{pipeline}:` section (topic and encoding)"
    assert signal.get("topic") == worker_topic(field), f"{pipeline} go to {signal.get('topic')!r}"


@pytest.mark.parametrize("pipeline", sorted(SIGNALS))
def test_encodings_are_decoded_by_the_workers(pipeline: str) -> None:
    exporter = kafka_exporter(pipeline)
    # The top-level `topic` / `encoding` of the exporter were deprecated in v0.124 and are gone:
    # the Collector of the pinned version refuses to start with them.
    assert "topic" not in exporter and "encoding" not in exporter, "use traces:/logs: {topic, encoding}"
    encoding = exporter[pipeline].get("encoding", "otlp_proto")  # the exporter's default
    assert encoding in worker_encodings(), f"{pipeline}: the workers do not decode {encoding!r}"


def test_a_batch_fits_in_one_kafka_message() -> None:
    batch = config()["processors"]["batch"]
    size, max_size = int(batch["send_batch_size"]), int(batch.get("send_batch_max_size", 0))
    assert max_size > 0, "send_batch_max_size must be set: without it a batch (one message) has no bound"
    assert size <= max_size
    for pipeline in SIGNALS:
        producer = kafka_exporter(pipeline).get("producer", {})
        max_message = int(producer.get("max_message_bytes", 1_000_000))
        assert max_size * ITEM_BUDGET_BYTES <= max_message, (
            f"{max_size} items x {ITEM_BUDGET_BYTES} B can exceed max_message_bytes ({max_message})"
        )
        broker_max = int(kafka_env().get("KAFKA_MESSAGE_MAX_BYTES", BROKER_DEFAULT_MESSAGE_MAX_BYTES))
        assert max_message <= broker_max, f"the broker refuses messages over {broker_max} bytes"
        worker_max = Settings.model_fields["max_message_bytes"].default
        assert max_message <= worker_max, f"the workers dead-letter messages over {worker_max} bytes"


def test_the_sending_queue_fits_under_the_memory_limit() -> None:
    _, soft_mib = memory_limits_mib()
    for pipeline in SIGNALS:
        exporter = kafka_exporter(pipeline)
        queue = exporter["sending_queue"]
        assert queue.get("enabled", True), "without the sending queue a slow broker blocks the receivers"
        assert queue.get("sizer", "requests") == "requests", "queue_size is checked here in batches"
        max_message = int(exporter.get("producer", {}).get("max_message_bytes", 1_000_000))
        queued = int(queue["queue_size"]) * max_message
        assert queued < soft_mib * 2**20, f"a full queue ({queued} B) exceeds the soft limit ({soft_mib} MiB)"
        retry = exporter["retry_on_failure"]
        assert retry.get("enabled", True), "retry_on_failure must stay enabled"


def test_protocol_version_is_accepted_by_the_compose_broker() -> None:
    for pipeline in SIGNALS:
        configured = resolve(kafka_exporter(pipeline)["protocol_version"], {})
        image = compose()["services"]["kafka"]["image"]
        broker = version(image.rsplit(":", 1)[1])
        assert MIN_PROTOCOL <= version(configured)[:2], f"Kafka 4 brokers refuse protocol {configured}"
        assert version(configured) <= broker, f"protocol {configured} is newer than the broker ({image})"


# -- the configuration in Compose -----------------------------------------------------------------------
def test_compose_runs_the_pinned_collector_with_this_file() -> None:
    service = collector_service()
    match = IMAGE.match(str(service.get("image", "")))
    assert match, f"pin otel/opentelemetry-collector-contrib:X.Y.Z, got {service.get('image')!r}"
    assert f"otel/opentelemetry-collector-contrib:{match.group(1)}" in CONFIG.read_text(), (
        "deploy/otel-collector.yaml must name the image version whose schema it follows"
    )
    command = " ".join(service.get("command", []))
    config_path = re.search(r"--config[= ](\S+)", command)
    in_container = config_path.group(1) if config_path else "/etc/otelcol-contrib/config.yaml"  # image default
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        mounts[target] = source
    assert in_container in mounts, f"nothing is mounted at {in_container}, the path the Collector reads"
    assert (REPO / mounts[in_container]).resolve() == CONFIG.resolve(), "mount deploy/otel-collector.yaml"


def test_compose_collector_starts_after_the_broker() -> None:
    depends = collector_service().get("depends_on", {})
    if isinstance(depends, list):
        depends = {name: {} for name in depends}
    assert "kafka" in depends, "the collector must depend on the kafka service"
    assert depends["kafka"].get("condition") == "service_healthy", "wait until the broker answers"


def test_compose_publishes_the_otlp_ports() -> None:
    ports = published(collector_service())
    assert ports.get(4317) == 4317 and ports.get(4318) == 4318, f"publish OTLP gRPC 4317 and HTTP 4318: {ports}"


def test_compose_collector_reaches_the_broker_the_workers_use() -> None:
    env = collector_env()
    (bootstrap,) = worker_bootstrap()
    for pipeline in SIGNALS:
        raw = kafka_exporter(pipeline)["brokers"]
        brokers = raw if isinstance(raw, list) else [raw]
        match = ENV_REF.match(str(brokers[0]))
        assert match, "brokers must come from an environment variable with a default"
        variable = match.group(1)
        assert env.get(variable) == bootstrap, f"{variable} in compose must be {bootstrap}, as for the workers"
        assert resolve(brokers[0], {}) == bootstrap, "the default must be the compose broker too"
        assert [resolve(b, env) for b in brokers] == [bootstrap]
    advertised = kafka_env()["KAFKA_ADVERTISED_LISTENERS"].split(",")
    addresses = {entry.split("://", 1)[1] for entry in advertised}
    assert bootstrap in addresses, f"{bootstrap} is not a listener the broker advertises: {sorted(addresses)}"
    assert not bootstrap.startswith(("localhost:", "127.")), "a container cannot reach the broker at localhost"


def test_compose_memory_settings_match_the_memory_limiter() -> None:
    hard_mib, _ = memory_limits_mib()
    env = collector_env()
    gomemlimit = re.fullmatch(r"(\d+)MiB", env.get("GOMEMLIMIT", ""))
    assert gomemlimit, "set GOMEMLIMIT (in MiB) for the collector"
    assert int(gomemlimit.group(1)) < hard_mib, "GOMEMLIMIT must be below memory_limiter's limit_mib"
    mem_limit = re.fullmatch(r"(\d+)m", str(collector_service().get("mem_limit", "")))
    assert mem_limit, "give the collector a mem_limit (in m)"
    assert int(mem_limit.group(1)) >= hard_mib + 50, "mem_limit must leave room above limit_mib for the runtime"
