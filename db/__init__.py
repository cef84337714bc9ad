"""Persistence: models, sessions, migrations and demo data."""
