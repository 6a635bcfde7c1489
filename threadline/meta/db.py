"""Database connections: engine set-up per dialect and schema migration on open."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, create_engine, event, text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from threadline.errors import InvalidArgument, StorageError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from alembic.config import Config
    from sqlalchemy import ColumnElement, SQLColumnExpression
    from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: the newest migration in `migrations/versions` (a test keeps the two equal); checking it with
#: one query lets every command start without importing Alembic (~50 ms)
SCHEMA_HEAD = "0008"


def hex_prefix(column: SQLColumnExpression[str], prefix: str) -> ColumnElement[bool]:
    """Rows whose lowercase-hex id starts with `prefix`, as a range on the id's index.

    `column.startswith(prefix)` is a LIKE, which SQLite compares without case and so answers
    by scanning every row; lowercase hex sorts below "g", so the range holds the same rows.
    """
    return and_(column >= prefix, column < prefix + "g")


def dialect_insert(dialect: str) -> Any:
    """`insert` of SQLite or PostgreSQL, the constructs that have ON CONFLICT (upserts)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # only on PostgreSQL: its import is slow

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; FULL sync makes a commit record durable before
    # the call returns (the order promised in RELIABILITY.md); the busy timeout turns writer
    # contention into waiting instead of "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _alembic_config() -> Config:
    from alembic.config import Config  # only when migrating: see SCHEMA_HEAD

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


class Database:
    """A metadata database: engine, session factory, schema at the latest revision.

    Args:
        url: SQLAlchemy URL (`sqlite:///path/meta.db`, `postgresql+psycopg://...`).
        migrate: bring the schema to the latest revision on open.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url, future=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise InvalidArgument(f"cannot use database URL {url!r}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.upgrade()

    def head_revision(self) -> str | None:
        """The newest migration shipped with this version of threadline."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(_alembic_config()).get_current_head()

    def current_revision(self) -> str | None:
        """The revision the database is at (None for an empty database)."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError):  # no version table yet
            return None

    def upgrade(self) -> None:
        """Apply pending migrations; a no-op (one query) when the schema is current."""
        try:
            if self.current_revision() == SCHEMA_HEAD:
                return
            from alembic import command

            cfg = _alembic_config()
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open metadata database {self.url}: {exc}") from exc

    def session(self) -> Session:
        """A new ORM session (use as a context manager)."""
        return self.sessions()

    def connect(self) -> Connection:
        """A Core connection (use as a context manager), for prebuilt statements on hot paths:
        a statement executed this way costs a quarter of the same one through a session."""
        return self.engine.connect()

    def begin(self) -> AbstractContextManager[Connection]:
        """A Core connection in a transaction, committed on leaving the block (rolled back on
        an error)."""
        return self.engine.begin()

    def close(self) -> None:
        """Dispose of pooled connections."""
        self.engine.dispose()
