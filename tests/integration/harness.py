"""Run the real worker as a subprocess and talk to it like a user would: Kafka in, SQL out."""

from __future__ import annotations

import asyncio
import threading
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from telemetry.settings import Settings
from telemetry.worker.process import WorkerProcess, WorkerProcessError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker(WorkerProcess):
    """A worker child per test, with polling helpers that fail with the worker's log."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        super().__init__(settings, log_dir / "worker.log")
        self.starts = 0

    def start(self, timeout: float = 90.0) -> Worker:
        self.starts += 1
        try:
            super().start(timeout)
        except WorkerProcessError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def wait_until(self, query: str, expected: Any, timeout: float = 60.0) -> Any:
        """Poll ``query`` until it returns ``expected``; fail with the last value otherwise."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.scalar(query)
            if value == expected:
                return value
            time.sleep(0.3)
        raise AssertionError(f"{query!r} gave {value!r}, expected {expected!r}\n{self.log_tail()}")

    def wait_for_counter(self, name: str, at_least: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        value = 0
        while time.monotonic() < deadline:
            value = int(self.stats()["counters"].get(name, 0))
            if value >= at_least:
                return value
            time.sleep(0.3)
        raise AssertionError(f"counter {name} = {value}, expected >= {at_least}\n{self.log_tail()}")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def produce(settings: Settings, topic: str, values: Iterable[bytes | dict[str, Any]], *,
            key_field: str = "request_id") -> int:  # fmt: skip
    """Publish values with aiokafka (key = the value's request_id); returns how many."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks="all")
        await producer.start()
        count = 0
        try:
            for value in values:
                if isinstance(value, dict):
                    key = str(value.get(key_field, "")).encode() or None
                    raw = orjson.dumps(value)
                else:
                    key, raw = None, value
                await producer.send(topic, raw, key=key)
                count += 1
            await producer.flush()
        finally:
            await producer.stop()
        return count

    return asyncio.run(run())


def produce_with_kcat(settings: Settings, topic: str, values: Iterable[dict[str, Any]]) -> int:
    """Publish with Debian's kcat (librdkafka, its own partitioner): an independent client."""
    lines = [f"{v['request_id']}\t{orjson.dumps(v).decode()}" for v in values]
    subprocess.run(
        ["kcat", "-P", "-b", settings.kafka_bootstrap, "-t", topic, "-K", "\t", "-X", "partitioner=consistent_random"],
        input="\n".join(lines).encode(), check=True, timeout=60,
    )  # fmt: skip
    return len(lines)


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every JSON body it gets, by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
