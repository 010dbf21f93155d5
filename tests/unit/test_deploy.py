"""The deployment files cannot drift from the code: ``docker-compose.yml`` and ``deploy/k8s/``.

No network, no cluster, no Docker: the Kubernetes manifests are validated against the
Kubernetes JSON schemas bundled by ``kubernetes-validate`` (strict: an unknown or misspelt
field fails), then checked against the worker itself: every ``TELEMETRY_*`` variable is a
:class:`telemetry.settings.Settings` field and its value is valid for it, the probes call the
worker's health page on the port it listens on, the selectors select the pods, the grace period
covers the worker's shutdown. The Compose file must run at least two workers in one consumer
group, each with its own published web port and a health check on the same page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from telemetry.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "docker-compose.yml"
DEPLOY_README = REPO / "deploy" / "README.md"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
WORKER_APP = REPO / "telemetry" / "worker" / "app.py"

VARIABLE = re.compile(r"\bTELEMETRY_[A-Z][A-Z0-9_]*")
SHUTDOWN_WAIT_S = 60  # the worker waits this long for its batch in flight on SIGTERM (app.py)
MIN_GRACE_S = SHUTDOWN_WAIT_S + 15
PLACEHOLDER = "CHANGE-ME"


# -- helpers -----------------------------------------------------------------------------------------
def health_path() -> str:
    """The path of the worker's health page, as ``telemetry/worker/app.py`` registers it."""
    source = WORKER_APP.read_text()
    match = re.search(r'@app\.page\("([^"]+)"\)\s*\n\s*class HealthPage\b', source)
    assert match, "telemetry/worker/app.py no longer registers a HealthPage with @app.page(...)"
    return match.group(1)


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every YAML document in deploy/k8s, kustomization included."""
    found = []
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return found


def resources() -> list[dict[str, Any]]:
    """The Kubernetes resources (everything but the Kustomization)."""
    return [doc for _, doc in k8s_documents() if doc.get("kind") != "Kustomization"]


def one(kind: str) -> dict[str, Any]:
    matching = [doc for doc in resources() if doc["kind"] == kind]
    assert len(matching) == 1, f"expected exactly one {kind} in deploy/k8s, found {len(matching)}"
    return matching[0]


def worker_container() -> dict[str, Any]:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the worker pod has one container"
    return containers[0]


def container_env() -> dict[str, str]:
    """The worker container's environment: the ConfigMap and Secret it reads, then its own env."""
    container = worker_container()
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in resources()}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = by_name.get(("ConfigMap", source["configMapRef"]["name"]))
            assert ref is not None, f"envFrom names a ConfigMap not in deploy/k8s: {source}"
            env.update(ref.get("data", {}))
        if "secretRef" in source:
            ref = by_name.get(("Secret", source["secretRef"]["name"]))
            assert ref is not None, f"envFrom names a Secret not in deploy/k8s: {source}"
            env.update(ref.get("stringData", {}))
    for item in container.get("env", []):
        env[item["name"]] = item["value"]
    return env


def resolve_port(port: int | str, container: dict[str, Any]) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert port in named, f"port {port!r} is not a named port of the container ({sorted(named)})"
    return int(named[port])


def check_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str) -> Settings:
    """Every TELEMETRY_* variable of ``env`` is a Settings field; the values load as Settings do
    in the worker (from the environment), so a wrong value fails here, not at start-up."""
    fields = {f"TELEMETRY_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(set(env) - fields)
    assert not unknown, f"{where}: not Settings fields: {unknown}"
    for name in [n for n in os.environ if n.startswith("TELEMETRY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def duration_s(value: str | int) -> float:
    """A Compose duration (``75s``, ``1m30s``, ``90``) in seconds."""
    if isinstance(value, int):
        return float(value)
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# -- Kubernetes ----------------------------------------------------------------------------------------
def test_manifests_are_valid_kubernetes_objects() -> None:
    import kubernetes_validate  # dev extra: bundles the schemas, so this needs no network

    version = kubernetes_validate.latest_version()
    docs = resources()
    assert {doc["kind"] for doc in docs} >= {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomizations = [doc for name, doc in k8s_documents() if doc.get("kind") == "Kustomization"]
    assert len(kustomizations) == 1 and (K8S / "kustomization.yaml").is_file()
    listed = kustomizations[0]["resources"]
    on_disk = sorted(p.name for p in K8S.iterdir() if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk, "kustomization.yaml must list every file in deploy/k8s, and only those"
    assert len(listed) == len(set(listed))


def test_every_telemetry_variable_is_a_settings_field() -> None:
    """Also the ones in comments and prose: a commented example is copied as it is."""
    fields = {f"TELEMETRY_{name.upper()}" for name in Settings.model_fields}
    files = [*sorted(K8S.iterdir()), COMPOSE, DEPLOY_README]
    seen: set[str] = set()
    for path in files:
        used = set(VARIABLE.findall(path.read_text()))
        # `TELEMETRY_KAFKA_SASL_*` in prose: a prefix that must name at least one field.
        prefixes = {name for name in used if name.endswith("_")}
        unknown = sorted(used - prefixes - fields)
        unknown += [f"{p}*" for p in sorted(prefixes) if not any(f.startswith(p) for f in fields)]
        assert not unknown, f"{path.relative_to(REPO)}: not Settings fields: {unknown}"
        seen |= used
    assert {"TELEMETRY_CLICKHOUSE_DSN", "TELEMETRY_WEB_HOST", "TELEMETRY_WEB_PORT", "TELEMETRY_CONSUMER_GROUP"} <= seen


def test_worker_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    env = container_env()
    settings = check_settings(env, monkeypatch, "deploy/k8s worker")
    assert settings.web_host == "0.0.0.0", "the probes and the Service reach the pod's address, not 127.0.0.1"
    assert not settings.is_embedded_clickhouse, "the workers share a ClickHouse server (TELEMETRY_CLICKHOUSE_DSN)"
    assert settings.clickhouse_dsn and settings.clickhouse_dsn.startswith(("http://", "https://"))


def test_probes_call_the_health_page_on_the_web_port() -> None:
    container = worker_container()
    env = container_env()
    (port,) = container["ports"]
    web_port = int(env.get("TELEMETRY_WEB_PORT", Settings.model_fields["web_port"].default))
    assert port["containerPort"] == web_port, "containerPort must be TELEMETRY_WEB_PORT"
    path = health_path()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container, f"the worker container has no {probe}"
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{probe} must call the worker's health page {path}"
        assert resolve_port(get["port"], container) == web_port, f"{probe} must call TELEMETRY_WEB_PORT"

    # A worker loading its join cache answers 503 for a while: the startup probe allows minutes,
    # and the liveness probe needs a long silence before it restarts a (busy) worker.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    assert liveness["timeoutSeconds"] >= 5


def test_service_and_disruption_budget_select_the_worker_pods() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items(), "the Deployment's selector must match its pod labels"

    service = one("Service")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items(), "the Service must select the worker pods"
    container = worker_container()
    web_port = container["ports"][0]["containerPort"]
    assert [resolve_port(p["targetPort"], container) for p in service["spec"]["ports"]] == [web_port]

    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), "the PDB must select the worker pods"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]


def test_deployment_runs_several_workers_and_lets_them_finish() -> None:
    deployment = one("Deployment")
    assert deployment["metadata"]["name"] == "llm-telemetry-worker"
    assert deployment["spec"]["replicas"] >= 2
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= MIN_GRACE_S
    # The wait this grace period covers, as the worker implements it.
    waits = [int(s) for s in re.findall(r"wait_for\(asyncio\.shield\(self\._ingest\), timeout=(\d+)\)", WORKER_APP.read_text())]
    assert all(spec["terminationGracePeriodSeconds"] >= w + 15 for w in waits)

    container = worker_container()
    assert container["image"].split("@")[0].rsplit(":", 1)[0].endswith("llm-telemetry")
    assert container["command"] == ["telemetry", "worker"]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert {"cpu", "memory"} <= requests.keys() and {"cpu", "memory"} <= limits.keys()


def test_pods_run_as_the_image_user_on_a_read_only_root() -> None:
    spec = one("Deployment")["spec"]["template"]["spec"]
    container = worker_container()
    pod_security, security = spec.get("securityContext", {}), container.get("securityContext", {})
    assert pod_security.get("runAsNonRoot") or security.get("runAsNonRoot")
    uid = re.search(r"--uid (\d+)", DOCKERFILE.read_text())
    assert uid, "deploy/Dockerfile no longer creates its user with --uid"
    # The image's USER is a name: runAsNonRoot can only be enforced with a numeric uid.
    assert pod_security.get("runAsUser", security.get("runAsUser")) == int(uid.group(1))
    assert security.get("readOnlyRootFilesystem") is True
    assert security.get("allowPrivilegeEscalation") is False

    # Everything the worker writes is on an emptyDir: TELEMETRY_DATA_DIR and the working
    # directory (Faust creates <app id>-data there).
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    data_dir = container_env()["TELEMETRY_DATA_DIR"]
    assert data_dir in writable, "TELEMETRY_DATA_DIR must be an emptyDir mount"
    assert container.get("workingDir") in writable, "Faust writes to its working directory"


def test_secret_example_holds_only_placeholders() -> None:
    secret = one("Secret")
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    assert values, "the Secret example names the keys the worker reads"
    for key, value in values.items():
        assert PLACEHOLDER in value, f"{key}: the example Secret must hold a {PLACEHOLDER} placeholder, not a value"
    assert "TELEMETRY_CLICKHOUSE_DSN" in values


# -- Docker Compose ----------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved, as Compose does
    assert isinstance(data, dict)
    return data


def interpolate(value: object) -> str:
    """``${VAR:-default}`` as Compose resolves it with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def compose_workers() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc.get("command") == ["telemetry", "worker"]}


def published(service: dict[str, Any]) -> Iterator[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    for entry in service.get("ports", []):
        host, host_port, container_port = str(entry).split(":")
        yield host, int(host_port), int(container_port.split("/")[0])


def test_compose_runs_two_workers_in_one_group(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    assert {"kafka", "clickhouse", "migrate"} <= services.keys()
    workers = compose_workers()
    assert len(workers) >= 2, f"docker-compose.yml must run at least two workers, found {sorted(workers)}"

    groups, web_ports, host_ports = set(), [], []
    for name, service in workers.items():
        env = {k: interpolate(v) for k, v in service["environment"].items()}
        settings = check_settings(env, monkeypatch, f"docker-compose.yml {name}")
        groups.add(settings.consumer_group)
        assert settings.web_host == "0.0.0.0", f"{name}: a port bound to 127.0.0.1 in a container cannot be published"
        assert not settings.is_embedded_clickhouse, f"{name}: workers share the ClickHouse server"
        web_ports.append(settings.web_port)
        ports = list(published(service))
        assert ports, f"{name}: its web port is not published"
        for host, host_port, container_port in ports:
            assert host == "127.0.0.1", f"{name}: publish on 127.0.0.1 only"
            assert container_port == settings.web_port, f"{name}: publish TELEMETRY_WEB_PORT"
            host_ports.append(host_port)
        assert duration_s(service["stop_grace_period"]) >= MIN_GRACE_S, f"{name}: stop_grace_period too short"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert len(groups) == 1, f"the workers must share one consumer group, found {groups}"
    assert len(set(web_ports)) == len(web_ports), f"each worker needs its own TELEMETRY_WEB_PORT: {web_ports}"
    assert len(set(host_ports)) == len(host_ports), f"each worker needs its own host port: {host_ports}"


def test_compose_health_checks_call_the_health_page() -> None:
    path = health_path()
    for name, service in compose_workers().items():
        test = " ".join(str(part) for part in service["healthcheck"]["test"])
        assert path in test, f"{name}: the health check must call {path}"
        assert "TELEMETRY_WEB_PORT" in test, f"{name}: the health check must use the worker's own port"
        assert "/telemetry/stats/" not in test, f"{name}: stats needs the token when one is set; health does not"


def test_compose_header_names_real_services() -> None:
    """The usage lines at the top (``docker compose logs -f worker-1 ...``) name existing services."""
    services = compose()["services"].keys()
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    named: list[str] = []
    for line in header.splitlines():
        if match := re.match(r"#\s+docker compose exec ([\w-]+)", line):
            named.append(match.group(1))
        if match := re.match(r"#\s+docker compose logs -f ((?:[\w-]+ ?)+)", line):
            named.extend(match.group(1).split())
    assert set(named) <= services, f"the header names unknown services: {sorted(set(named) - services)}"
    assert set(compose_workers()) <= set(named), "the header's `docker compose logs -f` names every worker"


def test_deploy_readme_shows_how_to_apply() -> None:
    text = DEPLOY_README.read_text()
    assert "kubectl apply -k deploy/k8s" in text
    assert "TELEMETRY_TOPIC_PARTITIONS" in text
