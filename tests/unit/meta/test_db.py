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
