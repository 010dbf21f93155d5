"""A real single-node KRaft Apache Kafka broker for development, run from Maven Central jars.

No Docker: ``start_broker`` resolves ``org.apache.kafka:kafka_2.13:<kafka_version>`` (plus the
logging backend the release tarball ships) with Maven into ``<kafka_cache_dir>/<version>/libs``
once, formats KRaft storage under ``<data_dir>/kafka`` and runs ``kafka.Kafka`` detached with a
bounded heap. The broker listens on the configured bootstrap host:port (PLAINTEXT) and on port + 1
(KRaft CONTROLLER). ``stop_broker`` stops only that JVM; ``broker_status`` reports what answers.
"""

from telemetry.localkafka.broker import BrokerStatus, broker_answers, broker_status, start_broker, stop_broker
from telemetry.localkafka.errors import BrokerError

__all__ = ["BrokerError", "BrokerStatus", "broker_answers", "broker_status", "start_broker", "stop_broker"]
