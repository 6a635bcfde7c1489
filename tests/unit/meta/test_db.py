"""The metadata database: the schema head constant matches the shipped migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.meta.db import SCHEMA_HEAD, Database

if TYPE_CHECKING:
    from pathlib import Path


def test_schema_head_matches_the_newest_migration(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        assert db.head_revision() == SCHEMA_HEAD
        assert db.current_revision() == SCHEMA_HEAD
    finally:
        db.close()


def test_reopening_a_current_database_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    Database(url).close()
    db = Database(url)
    try:
        assert db.current_revision() == SCHEMA_HEAD
    finally:
        db.close()
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}", migrate=False)
    try:
        assert empty.current_revision() is None
    finally:
        empty.close()


def test_a_database_at_an_older_revision_is_upgraded_on_open(tmp_path: Path) -> None:
    from alembic import command

    from threadline.meta.db import _alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url, migrate=False)
    cfg = _alembic_config()
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert old.current_revision() == "0001"
    old.close()

    db = Database(url)
    try:
        assert db.current_revision() == SCHEMA_HEAD
        with db.engine.connect() as conn:
            indexes = conn.exec_driver_sql("PRAGMA index_list('refs')").all()
        assert any(row[1] == "uq_refs_repo_name" and row[2] == 1 for row in indexes)
    finally:
        db.close()


def test_the_migrations_build_exactly_the_schema_the_models_declare(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from threadline.meta.models import Base

    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.close()
    assert diff == []
