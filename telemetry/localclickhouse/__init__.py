"""A local ClickHouse server over the embedded engine's data, for several processes at once.

chDB lets one process open a data directory. ``start_server`` runs the chDB engine in a detached
process of its own that serves ``<data_dir>/clickhouse`` (or the ``chdb://`` DSN's path) over
ClickHouse's HTTP and native TCP interfaces on 127.0.0.1, so workers, ``telemetry sql``, reports,
Grafana and any ClickHouse client share one engine through ``TELEMETRY_CLICKHOUSE_DSN=<its DSN>``.
``stop_server`` stops only that process; ``server_status`` reports what answers.
"""

from telemetry.localclickhouse.errors import ServerError
from telemetry.localclickhouse.server import ServerStatus, server_status, start_server, stop_server

__all__ = ["ServerError", "ServerStatus", "server_status", "start_server", "stop_server"]
