"""The real local broker: start from Maven Central jars, use it with aiokafka and kcat, stop it.

Runs on 127.0.0.1:19092 (controller 19093) with its own data_dir, sharing the jar cache with every
other run. Never skipped: a missing Java, Maven (first run) or kcat fails with the reason.
The tests run in file order and share one broker; the last one stops it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from telemetry.localkafka import BrokerStatus, broker_answers, broker_status, start_broker, stop_broker
from telemetry.localkafka.config import BrokerLayout
from telemetry.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # first run downloads ~45 MB

BOOTSTRAP = "127.0.0.1:19092"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(kafka_bootstrap=BOOTSTRAP, data_dir=tmp_path_factory.mktemp("local-broker"))


@pytest.fixture(scope="module")
def broker(settings: Settings) -> Iterator[BrokerStatus]:
    assert not broker_answers(BOOTSTRAP), f"something already listens on {BOOTSTRAP}; stop it first"
    lines: list[str] = []
    status = start_broker(settings, log=lines.append)
    assert status.running and status.managed, status
    assert any("ready at 127.0.0.1:19092" in line for line in lines), lines
    try:
        yield status
    finally:
        stop_broker(settings)


def _java_processes_with(server_properties: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"java") and str(server_properties).encode() in argv:
            pids.append(int(entry.name))
    return pids


def _kcat() -> str:
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is required: apt-get install -y kcat"
    return kcat


def test_start_runs_our_broker(broker: BrokerStatus, settings: Settings) -> None:
    layout = BrokerLayout.for_settings(settings)
    assert broker.bootstrap == BOOTSTRAP
    assert broker.version == settings.kafka_version
    assert layout.pid_file.read_text().strip() == str(broker.pid)
    assert layout.meta_properties.exists()
    assert _java_processes_with(layout.server_properties) == [broker.pid]

    status = broker_status(settings)
    assert (status.running, status.managed, status.pid, status.version) == (
        True, True, broker.pid, settings.kafka_version,
    )  # fmt: skip


def test_second_start_is_a_fast_noop(broker: BrokerStatus, settings: Settings) -> None:
    lines: list[str] = []
    started = time.monotonic()
    again = start_broker(settings, log=lines.append)
    elapsed = time.monotonic() - started

    assert elapsed < 1.5, elapsed
    assert again.pid == broker.pid and again.managed
    assert lines == [f"Kafka already answers at {BOOTSTRAP}"]


def test_aiokafka_produce_and_consume(broker: BrokerStatus) -> None:
    topic = f"test.localbroker.aiokafka.{uuid.uuid4().hex[:8]}"

    async def roundtrip() -> list[tuple[bytes | None, bytes | None]]:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello-aiokafka", key=b"k1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=BOOTSTRAP, group_id=f"g-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            got: list[tuple[bytes | None, bytes | None]] = []
            deadline = time.monotonic() + 30
            while not got and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                got = [(m.key, m.value) for records in batches.values() for m in records]
            await consumer.commit()
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(roundtrip()) == [(b"k1", b"hello-aiokafka")]


def test_kcat_metadata_produce_and_consume(broker: BrokerStatus) -> None:
    kcat = _kcat()
    topic = f"test.localbroker.kcat.{uuid.uuid4().hex[:8]}"

    metadata = subprocess.run([kcat, "-b", BOOTSTRAP, "-L"], check=False, capture_output=True, text=True, timeout=30)
    assert metadata.returncode == 0, metadata.stderr
    assert f"broker 1 at {BOOTSTRAP}" in metadata.stdout

    produced = subprocess.run(
        [kcat, "-b", BOOTSTRAP, "-P", "-t", topic, "-K", ":"],
        input="k2:hello-kcat\n", check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr

    consumed = subprocess.run(
        [kcat, "-b", BOOTSTRAP, "-C", "-t", topic, "-o", "beginning", "-c", "1", "-e", "-q", "-f", "%k=%s\\n"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == ["k2=hello-kcat"]


def test_kcat_reads_what_aiokafka_wrote(broker: BrokerStatus) -> None:
    kcat = _kcat()
    topic = f"test.localbroker.cross.{uuid.uuid4().hex[:8]}"

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"from-aiokafka")
        finally:
            await producer.stop()

    asyncio.run(produce())
    consumed = subprocess.run(
        [kcat, "-b", BOOTSTRAP, "-C", "-t", topic, "-o", "beginning", "-c", "1", "-e", "-q"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.strip() == "from-aiokafka"


def test_stop_leaves_no_java_behind(broker: BrokerStatus, settings: Settings) -> None:
    layout = BrokerLayout.for_settings(settings)
    started = time.monotonic()
    status = stop_broker(settings)
    elapsed = time.monotonic() - started

    assert not status.running and not status.managed and status.pid is None
    assert elapsed < 30, elapsed
    assert _java_processes_with(layout.server_properties) == []
    assert not layout.pid_file.exists()
    assert not broker_answers(BOOTSTRAP)
    assert stop_broker(settings).detail.startswith("nothing to stop")
