"""The reference docs cannot drift from the code.

- ``docs/configuration.md`` (and the README) must name every field of
  :class:`telemetry.settings.Settings` as ``TELEMETRY_<FIELD>``; the configuration table must
  show each field's current default (:func:`settings_rows` derives the rows from the class).
- ``docs/tables.md`` must document every table and view the migrations create, column by
  column with its type, as a real engine (chDB) reports them in ``system.columns``; its
  example queries must run.

To print the configuration table for the current Settings class::

    python -c "from tests.unit.test_docs import configuration_table; print(configuration_table())"
"""

from __future__ import annotations

import re
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.settings import Settings
from telemetry.sql import run_read_only
from telemetry.storage.migrate import migrate

REPO = Path(__file__).resolve().parents[2]
CONFIGURATION = REPO / "docs" / "configuration.md"
TABLES = REPO / "docs" / "tables.md"
README = REPO / "README.md"
DOCUMENTED_DATABASE = "llm_telemetry"  # the default database name the docs' queries use


# -- configuration ---------------------------------------------------------------------------------
def env_name(field: str) -> str:
    return f"TELEMETRY_{field.upper()}"


def render_default(value: object) -> str:
    """A default as the docs show it: ``unset`` for None, ``~/...`` for paths under $HOME."""
    if value is None:
        return "unset"
    if isinstance(value, Path):
        try:
            return "~/" + value.relative_to(Path.home()).as_posix()
        except ValueError:
            return value.as_posix()
    return str(value)


def _choices(annotation: object) -> list[str]:
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) field."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    found: list[str] = []
    for arg in typing.get_args(annotation):
        found.extend(_choices(arg))
    return found


def settings_rows() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every Settings field, in declaration order."""
    rows = []
    for name, field in Settings.model_fields.items():
        meaning = field.description or ""
        choices = _choices(field.annotation)
        if choices:
            meaning = (meaning + " " if meaning else "") + "One of " + ", ".join(f"`{c}`" for c in choices) + "."
        rows.append((env_name(name), render_default(field.default), meaning))
    return rows


def configuration_table() -> str:
    """The markdown table of every variable (the starting point of docs/configuration.md)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for variable, default, meaning in settings_rows():
        shown = default if default == "unset" else f"`{default}`"
        lines.append(f"| `{variable}` | {shown} | {meaning} |")
    return "\n".join(lines)


def _mentions(text: str, variable: str) -> bool:
    return re.search(rf"(?<![A-Z0-9_]){re.escape(variable)}(?![A-Z0-9_])", text) is not None


def _table_cells(text: str) -> dict[str, list[str]]:
    """Rows of markdown tables keyed by the backticked name in their first cell."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        if match:
            rows.setdefault(match.group(1), cells)
    return rows


def test_configuration_doc_documents_every_setting_with_its_default() -> None:
    text = CONFIGURATION.read_text()
    rows = _table_cells(text)
    problems = []
    for variable, default, meaning in settings_rows():
        expected_row = f"| `{variable}` | {default if default == 'unset' else f'`{default}`'} | {meaning} |"
        if variable not in rows:
            problems.append(f"missing row, e.g.: {expected_row}")
            continue
        cells = rows[variable]
        shown = cells[1].strip("`*_ ") if len(cells) > 1 else ""
        if shown != default:
            problems.append(f"{variable}: documented default {shown!r}, the code says {default!r}")
    assert not problems, "docs/configuration.md is out of date:\n" + "\n".join(problems)


def test_configuration_doc_names_no_unknown_variable() -> None:
    known = {variable for variable, _, _ in settings_rows()}
    named = set(re.findall(r"TELEMETRY_[A-Z0-9_]*[A-Z0-9]", CONFIGURATION.read_text()))
    assert named <= known, f"docs/configuration.md names variables Settings does not have: {sorted(named - known)}"


def test_readme_names_every_setting() -> None:
    assert README.exists(), "README.md is missing"
    text = README.read_text()
    missing = [variable for variable, _, _ in settings_rows() if not _mentions(text, variable)]
    assert not missing, f"README.md does not mention: {', '.join(missing)}"


# -- tables -----------------------------------------------------------------------------------------
def table_sections(text: str) -> dict[str, list[str]]:
    """Lines of each ``## `name` `` section, keyed by every backticked name in its heading.

    A section runs to the next level-1 or level-2 heading; one heading may name several tables
    that share their documentation (``## `route_minute`, `route_hour` ``)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and re.match(r"^#{1,2} ", line):
            names = re.findall(r"`([A-Za-z0-9_]+)`", line) if line.startswith("## ") else []
            current = [] if names else None
            for name in names:
                sections[name] = current  # type: ignore[assignment]
            continue
        if current is not None:
            current.append(line)
    return sections


def documented_columns(lines: list[str]) -> list[tuple[str, str]]:
    """(column, type) pairs of the section's tables: rows ``| `name`[, `name`...] | `type` | ...``."""
    found = []
    for line in lines:
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"`[^`]+`(\s*,\s*`[^`]+`)*", cells[0]):
            continue
        types = re.findall(r"`([^`]+)`", cells[1])
        for name in re.findall(r"`([^`]+)`", cells[0]):
            found.append((name, types[0] if len(types) == 1 else cells[1]))
    return found


def _parameter_value(clickhouse_type: str) -> str | None:
    if re.fullmatch(r"U?Int\d+", clickhouse_type):
        return "60"
    if re.fullmatch(r"Float\d+", clickhouse_type):
        return "1"
    if clickhouse_type == "String":
        return "''"
    return None


@pytest.fixture(scope="module")
def schema(engine: Client) -> Iterator[tuple[str, dict[str, list[tuple[str, str]]]]]:
    """A freshly migrated database and its tables' columns, as the engine reports them."""
    database = f"docs_{uuid.uuid4().hex[:8]}"
    migrate(engine, database)
    tables = engine.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = %(db)s ORDER BY name",
        parameters={"db": database},
    ).result_rows
    columns: dict[str, list[tuple[str, str]]] = {str(name): [] for name, _ in tables}
    for table, name, type_ in engine.query(
        "SELECT table, name, type FROM system.columns WHERE database = %(db)s ORDER BY table, position",
        parameters={"db": database},
    ).result_rows:
        columns[str(table)].append((str(name), str(type_)))
    # A parameterized view has no columns in system.columns: describe it with sample parameters.
    for name, create in tables:
        params = dict(re.findall(r"\{(\w+):(\w+)\}", str(create)))
        values = {p: _parameter_value(t) for p, t in params.items()}
        if not columns[str(name)] and params and all(v is not None for v in values.values()):
            args = ", ".join(f"{p} = {v}" for p, v in values.items())
            described = engine.query(f"DESCRIBE (SELECT * FROM {database}.{name}({args}))").result_rows
            columns[str(name)] = [(str(row[0]), str(row[1])) for row in described]
    yield database, columns
    engine.command(f"DROP DATABASE IF EXISTS {database}")


def test_tables_doc_documents_every_table_and_view(schema: tuple[str, dict[str, list[tuple[str, str]]]]) -> None:
    _, columns = schema
    sections = table_sections(TABLES.read_text())
    missing = sorted(set(columns) - set(sections))
    assert not missing, f"docs/tables.md has no '## `name`' section for: {', '.join(missing)}"
    stale = sorted(set(sections) - set(columns))
    assert not stale, f"docs/tables.md documents tables the migrations do not create: {', '.join(stale)}"


def test_tables_doc_documents_every_column_with_its_type(
    schema: tuple[str, dict[str, list[tuple[str, str]]]],
) -> None:
    _, columns = schema
    sections = table_sections(TABLES.read_text())
    problems = []
    for table, actual in columns.items():
        if table not in sections:
            continue  # reported by the test above
        documented = documented_columns(sections[table])
        for name, type_ in actual:
            if (name, type_) not in documented:
                types = [t for n, t in documented if n == name]
                hint = f" (documented as {types})" if types else ""
                problems.append(f"{table}.{name}: expected a row | `{name}` | `{type_}` | meaning |{hint}")
        if not actual:
            problems.append(f"{table}: the engine reports no columns, so its docs cannot be checked")
    # Rows naming a column that no table of their section has are stale.
    seen: set[int] = set()
    for table, lines in sections.items():
        if id(lines) in seen or table not in columns:
            continue
        seen.add(id(lines))
        owners = [t for t, section in sections.items() if section is lines]
        known = {name for t in owners for name, _ in columns.get(t, [])}
        for name, _ in documented_columns(lines):
            if name not in known:
                problems.append(f"{'/'.join(owners)}: documents column {name!r}, which does not exist")
    assert not problems, "docs/tables.md is out of date:\n" + "\n".join(problems)


def example_queries(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)]


def test_tables_doc_example_queries_run(engine: Client, schema: tuple[str, dict[str, list[tuple[str, str]]]]) -> None:
    database, _ = schema
    queries = example_queries(TABLES.read_text())
    assert len(queries) >= 5
    for sql in queries:
        assert f"{DOCUMENTED_DATABASE}." in sql, f"name tables with their database in examples:\n{sql}"
        run_read_only(engine, sql.replace(f"{DOCUMENTED_DATABASE}.", f"{database}."), server=False)


def test_otel_attribute_table_is_generated_from_the_dialects() -> None:
    from tools.otel_doc import DOC, updated

    text = DOC.read_text()
    assert updated(text) == text, "docs/otel.md is out of date: run python -m tools.otel_doc"
    assert "`gen_ai.usage.input_tokens`" in text and "`llm.token_count.prompt`" in text


def test_gate_examples_are_generated_from_the_code() -> None:
    from tools.gates_doc import DOC, updated

    text = DOC.read_text()
    assert updated(text) == text, "docs/gates.md is out of date: run python -m tools.gates_doc"
    assert "UNGATED tier-up" in text and "TierUpPostmortemDue" in text and "Closed-book / gold-context reading" in text
