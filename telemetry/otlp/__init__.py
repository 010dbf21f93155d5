"""OpenTelemetry ingest: OTLP traces and logs, as the Collector's Kafka exporter writes them,
become the same request and verdict events as our own JSON contract. Pure: bytes in, events out.

- :mod:`.wire` reads one OTLP message (protobuf or OTLP/JSON) into plain spans and log records;
- :mod:`.dialects` names the attributes each instrumentation dialect uses for each fact;
- :mod:`.genai` maps a GenAI span to a request and an evaluation to a verdict;
- :mod:`.split` turns one message into the items the worker routes, one per event.
"""
