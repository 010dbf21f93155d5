"""llm-telemetry: an event-driven stream processor for LLM telemetry."""

__version__ = "0.1.0"
