"""Grafana: the provisioned dashboard is what ``python -m tools.grafana`` writes from the built-in
dashboard's queries, its panels and datasource references hold together, and every query it holds
(panels, annotations, template variables) runs on the real engine once Grafana's macros and
variables are replaced by concrete values."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client

from telemetry.dashboard import queries as q
from telemetry.reports.stats import wilson
from telemetry.sql import run_read_only
from telemetry.storage.migrate import migrate
from tests.unit.test_dashboard import COLUMNS, DAY, T0, dataset
from tools import grafana

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
MACROS = {"__fromTime", "__toTime", "__interval_s", "__timeFilter"}


def doc() -> dict[str, Any]:
    return dict(json.loads(grafana.DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in doc()["panels"] if p["type"] != "row"]


def all_queries() -> list[tuple[str, str, str]]:
    """(where, kind, sql) of every query in the dashboard: kind ``timeseries``, ``table`` or ``other``."""
    d = doc()
    out = [(f"panel {p['title']}", p["type"], t["rawSql"]) for p in panels() for t in p["targets"]]
    out += [(f"annotation {a['name']}", "other", a["target"]["rawSql"]) for a in d["annotations"]["list"] if "target" in a]
    out += [(f"variable {v['name']}", "other", v["query"]) for v in d["templating"]["list"] if v["type"] == "query"]
    return out


def test_the_dashboard_file_is_generated_from_the_queries() -> None:
    assert grafana.DASHBOARD.read_text() == grafana.render(), "deploy/grafana is out of date: run python -m tools.grafana"
    assert grafana.main(["--check"]) == 0


def test_every_panel_uses_the_provisioned_datasource_and_fits_the_grid() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text())["datasources"]
    assert len(source) == 1 and source[0]["type"] == "grafana-clickhouse-datasource"
    assert source[0]["uid"] == grafana.DATASOURCE_UID and source[0]["jsonData"]["defaultDatabase"] == "llm_telemetry"
    d = doc()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells
    for p in panels():
        assert p["datasource"] == grafana.DATASOURCE, p["title"]
        assert p["type"] in ("timeseries", "table"), p["title"]
        (target,) = p["targets"]
        assert target["datasource"] == grafana.DATASOURCE and target["editorType"] == "sql" and target["refId"] == "A"
        assert target["format"] == (grafana.TIME_SERIES if p["type"] == "timeseries" else grafana.TABLE), p["title"]
    for a in d["annotations"]["list"]:
        if "target" in a:
            assert a["datasource"] == grafana.DATASOURCE and a["target"]["datasource"] == grafana.DATASOURCE
    route = next(v for v in d["templating"]["list"] if v["name"] == "route")
    assert route["datasource"] == grafana.DATASOURCE


def test_panels_run_the_built_in_dashboards_sql() -> None:
    """Each panel names its template, and its SQL holds that template filled for Grafana, verbatim."""
    names = set()
    for p in panels():
        match = re.search(r"telemetry\.dashboard\.queries\.([A-Z_]+)$", p["description"])
        assert match, p["title"]
        template = getattr(q, match.group(1))
        assert q.fill(template, q.GRAFANA_PARAMS) in p["targets"][0]["rawSql"], p["title"]
        names.add(match.group(1))
    assert names == {"OVERVIEW", "SPARKS", "ALERTS", "ROUTE_SERIES", "ROUTE_ERRORS", "ROUTE_MODELS"}


def test_compose_runs_grafana_with_the_provisioning() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in service["environment"]["GF_PLUGINS_PREINSTALL"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in service["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "llm-telemetry.yaml").read_text())["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{provider['options']['path']}/llm-telemetry.json"
    lines = (GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text().splitlines()
    needed = {name for line in lines if not line.lstrip().startswith("#") for name in re.findall(r"\$([A-Z_]+)", line)}
    assert needed == {"CLICKHOUSE_HOST", "CLICKHOUSE_HTTP_PORT", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"}
    assert needed <= set(service["environment"]), needed - set(service["environment"])
    assert all(str(p).startswith("127.0.0.1:") for p in service["ports"])


def test_every_variable_a_query_uses_is_defined() -> None:
    defined = {v["name"] for v in doc()["templating"]["list"]}
    for where, _, sql in all_queries():
        used = set(re.findall(r"\$\{(\w+)(?::\w+)?\}", sql)) | set(re.findall(r"\$(\w+)", sql))
        assert used <= defined | MACROS, (where, used - defined - MACROS)


# -- on the engine ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def database(engine: Client) -> Iterator[str]:
    name = f"graf_{uuid.uuid4().hex[:8]}"
    migrate(engine, name)
    for table, rows in dataset().items():
        engine.insert(table, rows, column_names=COLUMNS[table], database=name)
    yield name
    engine.command(f"DROP DATABASE IF EXISTS {name}")


def concrete(sql: str, database: str, t0_ms: int, t1_ms: int, route: str = "support.answer") -> str:
    """``sql`` with Grafana's macros and variables replaced as the ClickHouse plugin would."""
    a, b = f"toDateTime({t0_ms // 1000})", f"toDateTime({t1_ms // 1000})"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} >= {a} AND {m.group(1)} <= {b}", sql)
    sql = sql.replace("$__fromTime", a).replace("$__toTime", b).replace("$__interval_s", "900")
    sql = sql.replace("${database}", database).replace("${route:sqlstring}", "'" + route.replace("'", "''") + "'")
    assert "$" not in sql, sql
    return sql


def test_every_query_runs_on_the_engine(engine: Client, database: str) -> None:
    for where, kind, sql in all_queries():
        result = run_read_only(engine, concrete(sql, database, T0, T0 + 2 * DAY))
        assert result.rows, f"{where}: no rows"
        if kind == "timeseries":
            assert result.columns[0] == "time", where
            assert re.match(r"\d{4}-\d\d-\d\dT", str(result.rows[0][0])), where
    # a route name with a quote stays a string (Grafana's sqlstring format doubles it)
    series = next(sql for where, _, sql in all_queries() if where == "panel Cost per request")
    assert run_read_only(engine, concrete(series, database, T0, T0 + 2 * DAY, route="it's'; DROP")).rows == []


def test_the_band_is_the_wilson_interval_of_the_built_in_dashboard(engine: Client) -> None:
    cases = [(0, 1), (0, 10), (1, 10), (9, 10), (10, 10), (45, 50), (180, 200), (3, 1000), (999, 1000)]
    values = ", ".join(f"({p}, {n})" for p, n in cases)
    sql = (f"SELECT passed, judged, {grafana.wilson_sql('passed', 'judged', -1)} AS low, "
           f"{grafana.wilson_sql('passed', 'judged', 1)} AS high FROM values('passed Float64, judged Float64', {values})")  # fmt: skip
    rows = run_read_only(engine, sql).rows
    assert len(rows) == len(cases)
    for passed, judged, low, high in rows:
        assert (low, high) == pytest.approx(wilson(int(passed), int(judged)), abs=1e-12), (passed, judged)
    assert run_read_only(engine, f"SELECT {grafana.wilson_sql('0', '0', -1)} AS x").rows == [[None]]
