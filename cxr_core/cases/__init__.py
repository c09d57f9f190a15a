"""The case store (SQLAlchemy/Alembic), the worklist's rules, and analyse-and-keep."""
