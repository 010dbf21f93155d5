"""The worker: the Faust app and the imperative shell around the pure ingest and detect cores."""
