"""Resolve the broker's jars from Maven Central into a per-version cache outside the repository.

Layout: ``<kafka_cache_dir>/<version>/libs/*.jar`` plus ``libs/.complete`` (the manifest listing
every jar). A ``libs`` dir without a manifest whose jars all exist is never used: Maven resolves
into ``<version>/.resolve-<random>/libs`` and only a finished, verified download is renamed to
``libs`` (atomic on one filesystem), so an interrupted download cannot pass for a complete cache.
A complete cache means no Maven call at all.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from telemetry.localkafka.errors import BrokerError
from telemetry.localkafka.process import exclusive_lock
from telemetry.settings import Settings

logger = logging.getLogger(__name__)

MANIFEST = ".complete"
#: Upper bound of one Maven run (a first download is ~80 MB).
RESOLVE_TIMEOUT_S = 900.0
#: Pinned so the build does not depend on whatever plugin version Maven would pick by default.
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

#: log4j2 version shipped in the release tarball, by Kafka version range (inclusive bounds).
#: Kafka's published POMs lack the logging backend, so it is added explicitly.
_LOG4J2_BY_KAFKA: tuple[tuple[tuple[int, int, int], tuple[int, int, int], str], ...] = (
    ((4, 0, 0), (4, 1, 1), "2.24.3"),
    ((4, 1, 2), (4, 2, 0), "2.25.3"),
    ((4, 2, 1), (4, 3, 999), "2.25.4"),
)
_NEWEST_KNOWN = (4, 3, 999)


@dataclass(frozen=True)
class Artifact:
    """A Maven coordinate (jar packaging)."""

    group: str
    artifact: str
    version: str

    def __str__(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


def _version_tuple(version: str) -> tuple[int, int, int]:
    parts = version.split("-")[0].split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        raise BrokerError(f"TELEMETRY_KAFKA_VERSION={version!r} is not a Kafka version like 4.3.1") from None
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


def logging_backend(version: str) -> tuple[Artifact, ...]:
    """The SLF4J binding and logging backend the Kafka ``version`` tarball ships.

    4.x: log4j2 via ``log4j-slf4j-impl`` (the SLF4J 1.x binding), version from a small table;
    versions newer than the table get its newest entry (logged). 3.x: reload4j.
    Raises :class:`BrokerError` for versions older than 3.0 or unparsable ones.
    """
    key = _version_tuple(version)
    if key[0] == 3:
        return (
            Artifact("org.slf4j", "slf4j-reload4j", "1.7.36"),
            Artifact("ch.qos.reload4j", "reload4j", "1.2.25"),
        )
    if key[0] < 3:
        raise BrokerError(f"Kafka {version} is not supported by the local broker; use 3.9.x or 4.x")
    log4j = _LOG4J2_BY_KAFKA[-1][2]
    for low, high, candidate in _LOG4J2_BY_KAFKA:
        if low <= key <= high:
            log4j = candidate
            break
    else:
        if key > _NEWEST_KNOWN:
            logger.warning("kafka version newer than the logging table", extra={"version": version, "log4j": log4j})
    return tuple(
        Artifact("org.apache.logging.log4j", name, log4j) for name in ("log4j-slf4j-impl", "log4j-api", "log4j-core")
    )


def artifacts(version: str) -> tuple[Artifact, ...]:
    """Everything declared in the generated POM: the broker (``kafka_2.13``) and its logging backend."""
    return (Artifact("org.apache.kafka", "kafka_2.13", version), *logging_backend(version))


def render_pom(version: str) -> str:
    """A throwaway ``pom.xml`` whose runtime dependencies are exactly the broker's classpath."""
    deps = "".join(
        "    <dependency>\n"
        f"      <groupId>{escape(a.group)}</groupId>\n"
        f"      <artifactId>{escape(a.artifact)}</artifactId>\n"
        f"      <version>{escape(a.version)}</version>\n"
        "    </dependency>\n"
        for a in artifacts(version)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.llm-telemetry</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>{escape(version)}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def libs_dir(settings: Settings) -> Path:
    """``<kafka_cache_dir>/<kafka_version>/libs`` (absolute; may not exist yet)."""
    return settings.kafka_cache_dir.expanduser().resolve() / settings.kafka_version / "libs"


def is_complete(libs: Path) -> bool:
    """True when ``libs`` holds a manifest and every jar it lists (non-empty). Never raises."""
    try:
        names = (libs / MANIFEST).read_text(encoding="utf-8").split()
        return bool(names) and all((libs / n).is_file() and (libs / n).stat().st_size > 0 for n in names)
    except OSError:
        return False


def _maven_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("[ERROR]") and len(ln) > len("[ERROR] ")]
    line = errors[0] if errors else (lines[-1] if lines else "no output")
    return line[:400]


def ensure_libs(settings: Settings, log: Callable[[str], None] = lambda _msg: None) -> Path:
    """Return the directory of the broker's jars for ``settings.kafka_version``, downloading if needed.

    Blocks: instant when the cache is complete (no Maven call); otherwise runs Maven (up to
    :data:`RESOLVE_TIMEOUT_S`), holding a per-version file lock so concurrent callers download once.
    ``log`` receives one line before a download starts. Raises :class:`BrokerError` when ``mvn``
    is missing, Maven fails or times out, or the result lacks the broker jar.
    """
    libs = libs_dir(settings)
    if is_complete(libs):
        return libs
    version_dir = libs.parent
    with exclusive_lock(version_dir / ".resolve.lock"):
        if is_complete(libs):  # another process finished while we waited for the lock
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                f"Maven (mvn) not found on PATH; it is needed once to download Kafka {settings.kafka_version} "
                "(install it, e.g. apt-get install -y maven)"
            )
        for stale in version_dir.glob(".resolve-*"):
            shutil.rmtree(stale, ignore_errors=True)
        log(f"Downloading Kafka {settings.kafka_version} from Maven Central into {libs} (once per version) ...")
        work = Path(tempfile.mkdtemp(prefix=".resolve-", dir=version_dir))
        try:
            _run_maven(mvn, settings.kafka_version, work)
            if libs.exists():  # a leftover without a valid manifest
                shutil.rmtree(libs)
            os.rename(work / "libs", libs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return libs


def _run_maven(mvn: str, version: str, work: Path) -> None:
    pom = work / "pom.xml"
    pom.write_text(render_pom(version), encoding="utf-8")
    out = work / "libs"
    command = [
        mvn, "-q", "-B", "-f", str(pom),
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={out}",
    ]  # fmt: skip
    started = time.monotonic()
    logger.info("resolving kafka jars", extra={"version": version, "command": " ".join(command)})
    try:
        done = subprocess.run(
            command,
            check=False,
            cwd=work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RESOLVE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise BrokerError(
            f"Maven did not finish downloading Kafka {version} within {RESOLVE_TIMEOUT_S:.0f}s; "
            "check network access to Maven Central and retry"
        ) from None
    if done.returncode != 0:
        output = done.stdout + "\n" + done.stderr
        logger.error("maven failed", extra={"version": version, "returncode": done.returncode, "output": output})
        raise BrokerError(f"Maven could not resolve Kafka {version}: {_maven_error(output)}")
    jars = sorted(p.name for p in out.glob("*.jar"))
    if f"kafka_2.13-{version}.jar" not in jars:
        raise BrokerError(f"Maven finished but kafka_2.13-{version}.jar is missing from {out}")
    (out / MANIFEST).write_text("\n".join(jars) + "\n", encoding="utf-8")
    logger.info(
        "resolved kafka jars",
        extra={"version": version, "jars": len(jars), "elapsed_s": round(time.monotonic() - started, 1)},
    )
