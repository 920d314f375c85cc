"""Persistence: ORM tables, engine, the unit of work (session.py), the dialect seam, migrations."""
