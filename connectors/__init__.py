"""Sources and sinks: embedded store, Kafka, Fluss, feeds, FIX and venues."""
