"""Persistence: ORM tables, engine and sessions. Schema changes go through Alembic only."""
