"""Event reservation server: per-event Ray actors in front of a durable store."""

__version__ = "0.1.0"
