"""Metadata: the SQLAlchemy schema, its Alembic migrations, and database connections."""

from threadline.meta.db import Database

__all__ = ["Database"]
