-- A least-privilege ClickHouse user for analysts and `telemetry sql` / `telemetry report` on a
-- server DSN. Run it once as an administrator, with the password substituted (docs/sql.md):
--
--   sed "s/@ANALYST_PASSWORD@/$ANALYST_PASSWORD/" deploy/clickhouse/analyst.sql \
--     | clickhouse client --user telemetry --password ... --multiquery
--
-- then point the analysts' commands at it:
--
--   TELEMETRY_CLICKHOUSE_DSN=https://llm_telemetry_analyst:$ANALYST_PASSWORD@clickhouse.internal:8443 telemetry sql "..."
--
-- What it may do: SELECT on llm_telemetry.* and nothing else. readonly = 1 refuses writes,
-- settings changes and table functions that read files or the network (they need CREATE TEMPORARY
-- TABLE); no FILE, URL, S3, REMOTE, SOURCES or dictGet grants. The limits are those of the
-- TELEMETRY_SQL_* defaults (30 s, 1 GiB, 1 thread, 100,000 rows shown + 1 to mark truncation);
-- with readonly = 1 `telemetry sql` sends no settings and these apply. Edit both together.
-- Re-running the script replaces the profile, role and user (and resets the password).

CREATE SETTINGS PROFILE OR REPLACE llm_telemetry_analyst SETTINGS
    readonly = 1,
    max_execution_time = 30,
    timeout_overflow_mode = 'throw',
    max_memory_usage = 1073741824,
    max_threads = 1,
    `limit` = 100001,
    max_concurrent_queries_for_user = 2,
    allow_introspection_functions = 0;

CREATE ROLE OR REPLACE llm_telemetry_analyst;

GRANT SELECT ON llm_telemetry.* TO llm_telemetry_analyst;

CREATE USER OR REPLACE llm_telemetry_analyst
    IDENTIFIED WITH sha256_password BY '@ANALYST_PASSWORD@'
    DEFAULT ROLE llm_telemetry_analyst
    DEFAULT DATABASE llm_telemetry
    SETTINGS PROFILE 'llm_telemetry_analyst';
