"""Persistence: schema, engines, migrations and the store operations."""
