"""ClickHouse: client factory, versioned migrations, and the batching sink."""
