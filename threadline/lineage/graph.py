"""Record lineage edges and walk the graph up (what made this) or down (what this made).

An edge `(from) -[relation]-> (to)` says `to` was made from `from`: a parent commit to its
child, an input commit to the run that read it, a run to the commit or model it produced.
Closures are computed in the database with a recursive query, so they work the same on SQLite
and PostgreSQL and never load the whole graph.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from threadline.errors import InvalidArgument
from threadline.meta.db import dialect_insert
from threadline.meta.models import LineageEdgeRow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.engine import Connection

    from threadline.meta.db import Database

Direction = Literal["up", "down"]


@dataclass(frozen=True, order=True)
class Node:
    """An entity in the graph: a kind (`data_commit`, `run`, `model_version`...) and an id."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Edge:
    """`source -[relation]-> target`, plus free metadata."""

    source: Node
    relation: str
    target: Node
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def _check(node: Node) -> None:
    if not node.kind or not node.id or len(node.kind) > 40 or len(node.id) > 200:
        raise InvalidArgument(f"invalid lineage node {node!r}: kind and id must be 1-40/1-200 chars")


def add_edges(within: Session | Connection, edges: Iterable[Edge]) -> None:
    """Insert edges inside the caller's transaction (an ORM session's, or a Core connection's);
    an edge recorded twice is kept once."""
    rows = []
    for edge in edges:
        _check(edge.source)
        _check(edge.target)
        rows.append(
            {
                "from_kind": edge.source.kind,
                "from_id": edge.source.id,
                "relation": edge.relation,
                "to_kind": edge.target.kind,
                "to_id": edge.target.id,
                "meta": edge.meta,
            }
        )
    if not rows:
        return
    # Core on the transaction's connection, not the ORM's bulk-insert path (half the time)
    connection = within.connection() if isinstance(within, Session) else within
    connection.execute(_insert_ignoring_duplicates(connection.dialect.name), rows)


@functools.cache
def _insert_ignoring_duplicates(dialect: str) -> Any:
    """The edge insert, built once per dialect: a statement built anew per commit cost SQLAlchemy
    a new cache key each time (0.3 ms)."""
    return dialect_insert(dialect)(LineageEdgeRow).on_conflict_do_nothing()


# The casts give the seed row the columns' own types: PostgreSQL refuses a recursive query
# whose non-recursive term is `text` while the recursive one is `varchar`.
_CLOSURE = """
WITH RECURSIVE closure(kind, id, depth) AS (
    SELECT CAST(:kind AS VARCHAR(40)), CAST(:id AS VARCHAR(200)), 0
    UNION
    SELECT e.{next_kind}, e.{next_id}, c.depth + 1
    FROM lineage_edges e JOIN closure c ON e.{this_kind} = c.kind AND e.{this_id} = c.id
    WHERE c.depth < :max_depth
)
SELECT DISTINCT e.from_kind, e.from_id, e.relation, e.to_kind, e.to_id
FROM lineage_edges e JOIN closure c ON e.{this_kind} = c.kind AND e.{this_id} = c.id
"""


class LineageGraph:
    """Reads and writes lineage edges.

    Args:
        db: the metadata database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, source: Node, relation: str, target: Node, **meta: Any) -> None:
        """Record one edge in its own transaction."""
        with self.db.session() as session, session.begin():
            add_edges(session, [Edge(source, relation, target, meta)])

    def edges(self, node: Node, direction: Direction, max_depth: int = 1000) -> list[Edge]:
        """Every edge of the upstream (`up`) or downstream (`down`) closure of `node`."""
        _check(node)
        if direction == "up":
            cols = {"this_kind": "to_kind", "this_id": "to_id", "next_kind": "from_kind",
                    "next_id": "from_id"}
        elif direction == "down":
            cols = {"this_kind": "from_kind", "this_id": "from_id", "next_kind": "to_kind",
                    "next_id": "to_id"}
        else:
            raise InvalidArgument(f"direction must be 'up' or 'down', not {direction!r}")
        # The template only interpolates the fixed column names above; values are bound.
        query = text(_CLOSURE.format(**cols))
        with self.db.session() as session:
            rows = session.execute(
                query, {"kind": node.kind, "id": node.id, "max_depth": max_depth}
            ).all()
        return sorted(
            (Edge(Node(fk, fi), rel, Node(tk, ti)) for fk, fi, rel, tk, ti in rows),
            key=lambda e: (e.source, e.relation, e.target),
        )

    def closure(self, node: Node, direction: Direction) -> set[Node]:
        """The nodes upstream or downstream of `node` (not including it)."""
        edges = self.edges(node, direction)
        nodes = {e.source for e in edges} if direction == "up" else {e.target for e in edges}
        nodes.discard(node)
        return nodes

    def direct(self, node: Node) -> list[Edge]:
        """Edges touching `node` directly, in either direction."""
        with self.db.session() as session:
            rows = session.scalars(
                select(LineageEdgeRow).where(
                    ((LineageEdgeRow.from_kind == node.kind) & (LineageEdgeRow.from_id == node.id))
                    | ((LineageEdgeRow.to_kind == node.kind) & (LineageEdgeRow.to_id == node.id))
                )
            ).all()
        return [
            Edge(Node(r.from_kind, r.from_id), r.relation, Node(r.to_kind, r.to_id), r.meta)
            for r in rows
        ]
