"""A simulated MQTT head-end: a fleet of meters publishing meter-day
ReadingBatch messages, with fault injection. See docs/mqtt.md."""
