"""Run the real worker as a subprocess and talk to it like a user would: Kafka in, SQL out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from telemetry.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"TELEMETRY_{name.upper()}"] = str(value)
    return env


class Worker:
    """``telemetry worker`` in a subprocess, with its HTTP pages for readiness and SQL."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> Worker:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"worker-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry", "worker"], env=settings_env(self.settings), stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.stats().get("ready"):
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.log_dir / f"worker-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _get(self, path: str, body: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        url = f"http://127.0.0.1:{self.settings.web_port}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/telemetry/stats/", timeout=2))

    def sql(self, query: str) -> list[dict[str, Any]]:
        try:
            result = self._get("/telemetry/sql/", {"sql": query})
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"query failed: {exc.read().decode()}") from None
        return [dict(zip(result["columns"], row)) for row in result["rows"]]

    def scalar(self, query: str) -> Any:
        rows = self.sql(query)
        return next(iter(rows[0].values())) if rows else None

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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

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
