"""Data repositories: create, list, delete; resolve refs; commit; branches, tags, history.

Write order (RELIABILITY.md): objects first (published packs are durable), then in one
database transaction the commit record, its lineage edges and, last, the branch pointer moved
by compare-and-swap. A crash before that transaction leaves only unreachable objects for gc;
the transaction itself is all-or-nothing.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import blake3
from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import OperationalError as DBOperationalError

from threadline.data.manifest import Manifest
from threadline.data.model import CommitInfo, CommitResult, RefLogEntry, RepoInfo
from threadline.data.paths import check_name, normalize_path
from threadline.data.refs import RefSpec, parse_ref
from threadline.data.statcache import StatCache
from threadline.data.worktree import build_manifest, scan
from threadline.errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidArgument,
    NotFound,
    StorageError,
    ThreadlineError,
)
from threadline.lineage.graph import Edge, Node, add_edges
from threadline.meta.db import hex_prefix
from threadline.meta.models import CommitRow, RefLogRow, RefRow, RepoRow
from threadline.storage.repack import merge_small_packs

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from sqlalchemy import ColumnElement, Row, Select, Table
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    from threadline.data.manifest import FileEntry
    from threadline.meta.db import Database
    from threadline.storage.cas import ContentStore
    from threadline.storage.locks import StoreLock

COMMIT_KIND = "data_commit"
MIN_PREFIX = 4
#: manifests of recent commits kept decoded in memory (a watching pipeline re-reads the last)
MANIFESTS_KEPT = 8

log = logging.getLogger(__name__)

# Resolving a ref and committing are on the path of every command and every pipeline run, so
# they run these statements, built once, on a Core connection: a statement built per call and
# run through an ORM session costs SQLAlchemy four times what SQLite takes to answer it.
_REPOS = cast("Table", RepoRow.__table__)
_REFS = cast("Table", RefRow.__table__)
_COMMITS = cast("Table", CommitRow.__table__)
_REF_LOG = cast("Table", RefLogRow.__table__)
_REPO_NAMED = select(_REPOS.c.id, _REPOS.c.name, _REPOS.c.default_branch).where(
    _REPOS.c.name == bindparam("name"))


def _resolving(ref_name: ColumnElement[str]) -> Select[Any]:
    """A repo by name, with its ref called `ref_name` and that ref's commit, if any."""
    return (
        select(_REPOS.c.id, _REPOS.c.name, _REPOS.c.default_branch,
               _REFS.c.kind.label("ref_kind"), _REFS.c.commit_id.label("ref_commit"),
               *(column.label(f"commit_{column.key}") for column in _COMMITS.c))
        .select_from(_REPOS.outerjoin(_REFS, and_(_REFS.c.repo_id == _REPOS.c.id,
                                                  _REFS.c.name == ref_name))
                     .outerjoin(_COMMITS, _COMMITS.c.id == _REFS.c.commit_id))
        .where(_REPOS.c.name == bindparam("name")))


#: resolving `repo@rev` and `repo` (its default branch): one query each
_RESOLVE_REV = _resolving(bindparam("rev"))
_RESOLVE_DEFAULT = _resolving(_REPOS.c.default_branch)
_COMMIT_BY_ID = select(_COMMITS).where(_COMMITS.c.id == bindparam("id"))
_COMMIT_IN_REPO = select(_COMMITS.c.id).join(_REPOS, _REPOS.c.id == _COMMITS.c.repo_id).where(
    _COMMITS.c.id == bindparam("id"), _REPOS.c.name == bindparam("name"))
_BRANCH = (_REFS.c.repo_id == bindparam("b_repo"), _REFS.c.kind == "branch",
           _REFS.c.name == bindparam("b_branch"))
_BRANCH_HEAD = select(_REFS.c.commit_id).where(*_BRANCH)
#: compare-and-swap of a branch pointer, from a commit or from no commit (a new branch)
_MOVE_FROM = update(_REFS).where(*_BRANCH, _REFS.c.commit_id == bindparam("b_expected"))
_MOVE_FROM_EMPTY = update(_REFS).where(*_BRANCH, _REFS.c.commit_id.is_(None))
_INSERT_COMMIT = insert(_COMMITS)
_INSERT_REF_LOG = insert(_REF_LOG)


def commit_node(commit_id: str) -> Node:
    """The lineage node of a data commit."""
    return Node(COMMIT_KIND, commit_id)


def _commit_info(row: Row[Any], repo: str, prefix: str = "") -> CommitInfo:
    """A commit from the columns of `commits` in a Core row (named `prefix` + column: the
    column is `metadata`, not `meta`)."""
    values = row._mapping
    created = values[f"{prefix}created_at"]
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    return CommitInfo(
        values[f"{prefix}id"], repo, list(values[f"{prefix}parents"]), values[f"{prefix}manifest"],
        values[f"{prefix}message"], values[f"{prefix}author"], created,
        dict(values[f"{prefix}metadata"]), values[f"{prefix}file_count"],
        values[f"{prefix}total_bytes"],
    )


def _no_repo(name: str) -> NotFound:
    return NotFound(f"data repo {name!r} does not exist; create it with `threadline data create {name}`")


class RepoKey(NamedTuple):
    """A repo as a resolved ref names it."""

    id: int
    name: str
    default_branch: str


class Resolved:
    """A ref resolved against the database: repo, commit (None on an empty branch), path."""

    def __init__(self, spec: RefSpec, repo: RepoKey, commit: CommitInfo | None, branch: str | None):
        self.spec = spec
        self.repo = repo
        self.commit = commit
        self.branch = branch

    @property
    def path(self) -> str:
        """The in-repo path the ref names ("" for the whole tree)."""
        return self.spec.path or ""

    def require_commit(self) -> CommitInfo:
        """The commit, or NotFound if the branch has none yet."""
        if self.commit is None:
            raise NotFound(
                f"{self.spec} has no commits yet; commit data with "
                f"`threadline data commit {self.repo.name} PATH`"
            )
        return self.commit


class DataRepos:
    """Every data-repo operation that touches metadata.

    Args:
        db: metadata database.
        content: the content-addressed store.
        lock: the store lock (writers shared, gc exclusive).
        stat_cache: path of the machine-local stat cache.
        author: default author of commits and branch moves.
    """

    def __init__(
        self, db: Database, content: ContentStore, lock: StoreLock, stat_cache: Path, author: str
    ) -> None:
        self.db = db
        self.content = content
        self.lock = lock
        self.stat_cache_path = stat_cache
        self.author = author
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()

    def close(self) -> None:
        """Release the content store's files and the database's pooled connections."""
        self.content.close()
        self.db.close()

    # ----------------------------------------------------------------- repos
    def _repo_row(self, session: Session, name: str) -> RepoRow:
        row = session.scalar(select(RepoRow).where(RepoRow.name == check_name(name, "repo name")))
        if row is None:
            raise _no_repo(name)
        return row

    def _repo_info(self, session: Session, row: RepoRow) -> RepoInfo:
        refs = session.scalars(select(RefRow).where(RefRow.repo_id == row.id)).all()
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        return RepoInfo(
            row.name, row.description, row.default_branch, created,
            {r.name: r.commit_id for r in refs if r.kind == "branch"},
            {r.name: r.commit_id or "" for r in refs if r.kind == "tag"},
        )

    def create(self, name: str, description: str = "", default_branch: str = "main") -> RepoInfo:
        """Create an empty repo with its default branch."""
        check_name(name, "repo name")
        check_name(default_branch, "branch name")
        try:
            with self.db.session() as session, session.begin():
                row = RepoRow(name=name, description=description, default_branch=default_branch,
                              created_by=self.author, created_at=datetime.now(UTC))
                session.add(row)
                session.flush()
                session.add(RefRow(repo_id=row.id, kind="branch", name=default_branch))
                session.add(RefLogRow(repo_id=row.id, name=default_branch, action="create",
                                      actor=self.author, message="repo created"))
        except DBIntegrityError as exc:
            raise AlreadyExists(f"data repo {name!r} exists already") from exc
        return self.get(name)

    def get(self, name: str) -> RepoInfo:
        """One repo with its branches and tags."""
        with self.db.session() as session:
            return self._repo_info(session, self._repo_row(session, name))

    def exists(self, name: str, commit_id: str | None = None) -> bool:
        """Whether repo `name` exists (and, given a full `commit_id`, holds that commit): one
        query, for callers that ask on every run."""
        with self.db.connect() as conn:
            if commit_id is None:
                found = conn.execute(_REPO_NAMED, {"name": name}).first()
            else:
                found = conn.execute(_COMMIT_IN_REPO, {"id": commit_id, "name": name}).first()
        return found is not None

    def list(self) -> builtins.list[RepoInfo]:
        """All repos, by name."""
        with self.db.session() as session:
            rows = session.scalars(select(RepoRow).order_by(RepoRow.name)).all()
            return [self._repo_info(session, r) for r in rows]

    def delete(self, name: str) -> None:
        """Delete a repo's records; its objects are freed by the next `gc`."""
        with self.db.session() as session, session.begin():
            row = self._repo_row(session, name)
            for table in (RefLogRow, RefRow, CommitRow):
                session.execute(delete(table).where(table.repo_id == row.id))
            session.delete(row)

    # ------------------------------------------------------------------ refs
    def resolve(self, ref: str | RefSpec) -> Resolved:
        """Resolve `repo[@rev][~N][:path]` to a commit: branch first, then tag, then id prefix."""
        spec = parse_ref(ref) if isinstance(ref, str) else ref
        name = check_name(spec.repo, "repo name")
        with self.db.connect() as conn:
            if spec.rev:
                found = conn.execute(_RESOLVE_REV, {"name": name, "rev": spec.rev}).first()
            else:
                found = conn.execute(_RESOLVE_DEFAULT, {"name": name}).first()
            if found is None:
                raise _no_repo(spec.repo)
            repo = RepoKey(found.id, found.name, found.default_branch)
            rev = spec.rev or repo.default_branch
            branch: str | None = None
            commit_id: str | None
            if found.ref_kind == "branch":
                branch, commit_id = rev, found.ref_commit
            elif found.ref_kind == "tag":
                commit_id = found.ref_commit
            else:
                commit_id = self._by_prefix(conn, repo, rev, str(spec))
            commit: CommitInfo | None = None
            if commit_id and commit_id == found.commit_id and found.commit_repo_id == repo.id:
                commit = _commit_info(found, repo.name, "commit_")
            elif commit_id:
                commit = self._load_commit(conn, repo, commit_id)
            for step in range(spec.back):
                if commit is None or not commit.parents:
                    raise NotFound(f"{spec} goes back {spec.back} commits but the history "
                                   f"has only {step}")
                commit = self._load_commit(conn, repo, commit.parents[0])
            return Resolved(spec, repo, commit, branch if not spec.back else None)

    @staticmethod
    def _by_prefix(conn: Connection, repo: RepoKey, rev: str, ref: str) -> str:
        lowered = rev.lower()
        if len(lowered) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in lowered):
            raise NotFound(f"{ref}: no branch or tag named {rev!r} in {repo.name!r}; "
                           f"`threadline data list` shows them")
        ids = conn.scalars(select(_COMMITS.c.id).where(
            hex_prefix(_COMMITS.c.id, lowered), _COMMITS.c.repo_id == repo.id).limit(2)).all()
        if not ids:
            raise NotFound(f"{ref}: no branch, tag or commit {rev!r} in {repo.name!r}")
        if len(ids) > 1:
            raise InvalidArgument(f"{ref}: commit prefix {rev!r} is ambiguous; give more digits")
        return str(ids[0])

    @staticmethod
    def _load_commit(conn: Connection, repo: RepoKey, commit_id: str) -> CommitInfo:
        row = conn.execute(_COMMIT_BY_ID, {"id": commit_id}).first()
        if row is None or row.repo_id != repo.id:
            raise NotFound(f"commit {commit_id[:12]} is not in data repo {repo.name!r}")
        return _commit_info(row, repo.name)

    def manifest(self, commit: CommitInfo) -> Manifest:
        """The tree of a commit (the last few are kept in memory)."""
        cached = self._manifests.get(commit.manifest)
        if cached is None:
            cached = Manifest.decode(self.content.get(commit.manifest), commit.manifest)
        self._keep_manifest(commit.manifest, cached)
        return cached

    def _keep_manifest(self, key: str, manifest: Manifest) -> None:
        """Keep `manifest` as the most recently used of the few held in memory."""
        self._manifests[key] = manifest
        self._manifests.move_to_end(key)
        while len(self._manifests) > MANIFESTS_KEPT:
            self._manifests.popitem(last=False)

    # ---------------------------------------------------------------- commit
    def commit(
        self,
        ref: str,
        paths: Sequence[Path],
        message: str,
        *,
        metadata: dict[str, Any] | None = None,
        prefix: str = "",
        update: bool = False,
        drop: Sequence[str] = (),
        produced_by: Node | None = None,
        derived_from: Sequence[tuple[Node, str]] = (),
        allow_empty: bool = False,
        progress: Callable[[int], None] | None = None,
        author: str | None = None,
        entries: Sequence[FileEntry] = (),
        stat_cache: bool = True,
        onto: Resolved | None = None,
    ) -> CommitResult:
        """Commit local files onto a branch.

        Args:
            ref: `repo` or `repo@branch` (the branch must exist).
            paths: files and folders; a folder contributes its contents.
            message: what changed and why.
            metadata: free JSON-ready data stored with the commit.
            prefix: in-repo folder to place the files under.
            update: keep the parent's files that `paths` do not replace (default: the commit's
                tree is exactly `paths`).
            drop: with `update`, in-repo files or folders of the parent's tree to leave out (the
                outputs of a pipeline's changed or removed datums).
            produced_by: the run or step that made this data, recorded in lineage.
            derived_from: (node, relation) pairs this data was made from, e.g. the input
                commit of a preparation step; each becomes a lineage edge to the new commit.
            allow_empty: create a commit even if the tree equals the parent's.
            progress: called with bytes processed.
            author: overrides the configured author.
            entries: files already in the store (entries of another commit's manifest), placed
                at their paths without reading or copying any data; a file of `paths` at the
                same path wins. Refused with IntegrityError if an entry's object is missing.
            stat_cache: consult and update the stat cache; False for a throwaway folder (a
                pipeline step's scratch output), whose paths would only grow the cache.
            onto: `ref` as the caller resolved it already (saves reading the branch again);
                a branch that moved since is still refused with Conflict when publishing.
        """
        spec = parse_ref(ref)
        if spec.back or spec.path is not None:
            raise InvalidArgument(f"commit onto a branch (`repo@branch`), not {ref!r}")
        try:
            meta_json = json.loads(json.dumps(metadata or {}))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"commit metadata must be JSON-serialisable: {exc}") from exc
        if drop and not update:
            raise InvalidArgument("drop= leaves files of the parent out: it needs update=True")
        drop = [normalize_path(path) for path in drop]
        if onto is not None and (onto.repo.name, onto.branch) != (
                spec.repo, spec.rev or onto.repo.default_branch):
            raise InvalidArgument(f"onto is {onto.spec}, not the branch {ref} being committed to")
        files = scan(list(paths), prefix)
        for entry in entries:
            if normalize_path(entry.path) != entry.path:
                raise InvalidArgument(f"entry path {entry.path!r} is not a canonical in-repo path")
        with self.lock.shared():
            self.content.refresh()
            missing = {e.key for e in entries} - self.content.has_many({e.key for e in entries})
            if missing:
                raise IntegrityError(
                    f"cannot commit {len(missing)} entries whose objects are not in the store "
                    f"(e.g. {sorted(missing)[0][:16]}); pass entries of commits in this home")
            target = onto if onto is not None else self.resolve(spec)
            if target.branch is None:
                raise InvalidArgument(
                    f"{ref} is not a branch; commit onto a branch or create one with "
                    f"`threadline data branch {spec.repo} NAME --from {ref}`"
                )
            head = target.commit
            cache = StatCache(self.stat_cache_path) if stat_cache else None
            try:
                with self.content.writer() as writer:
                    manifest = build_manifest(files, writer, cache, progress)
                    if entries:
                        given = {e.path for e in manifest}
                        manifest = Manifest([*(e for e in entries if e.path not in given), *manifest])
                    if update and head is not None:
                        manifest = self.manifest(head).updated(manifest, drop)
                    manifest_key = writer.put_blob(manifest.encode())
            finally:
                if cache is not None:
                    cache.close()
            if head is not None and head.manifest == manifest_key and not allow_empty:
                return CommitResult(head, False, target.branch)
            created = datetime.now(UTC)
            record = {
                "repo": spec.repo, "parents": [head.id] if head else [],
                "manifest": manifest_key, "message": message, "author": author or self.author,
                "created_at": created.isoformat(), "metadata": meta_json,
            }
            commit_id = blake3.blake3(
                json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            info = CommitInfo(commit_id, spec.repo, record["parents"], manifest_key, message,
                              record["author"], created, meta_json, len(manifest),
                              manifest.total_bytes)
            self._publish(target.repo, target.branch, head.id if head else None, info, produced_by,
                          derived_from)
            self._keep_manifest(manifest_key, manifest)
            self._merge_small_packs()
            return CommitResult(info, True, target.branch)

    def _merge_small_packs(self) -> None:
        """Keep the pack count bounded (see `storage.repack`); the commit is published already,
        so a merge that fails is only logged, and the next commit tries again."""
        try:
            merge_small_packs(self.content)
        except NotFound as exc:  # another process merged some of them first: nothing to do
            log.debug("small packs merged elsewhere meanwhile: %s", exc)
        except (ThreadlineError, OSError) as exc:
            log.warning("could not merge small packs (the commit is safe): %s", exc)

    def _publish(
        self, repo: RepoKey, branch: str, expected: str | None, info: CommitInfo,
        produced_by: Node | None, derived_from: Sequence[tuple[Node, str]] = (),
    ) -> None:
        edges = [Edge(commit_node(p), "parent_of", commit_node(info.id)) for p in info.parents]
        if produced_by is not None:
            edges.append(Edge(produced_by, "produced", commit_node(info.id)))
        edges += [Edge(node, relation, commit_node(info.id)) for node, relation in derived_from]
        try:
            self._record(repo, branch, expected, info, edges)
        except DBOperationalError as exc:  # disk full or I/O error under the database
            raise StorageError(
                f"could not record commit {info.short_id} in {self.db.url}: {exc.orig}; "
                "nothing was published - fix the cause and retry",
                path=self.db.url,
            ) from exc

    def _record(
        self, repo: RepoKey, branch: str, expected: str | None, info: CommitInfo, edges: builtins.list[Edge]
    ) -> None:
        with self.db.begin() as conn:
            conn.execute(_INSERT_COMMIT, {
                "id": info.id, "repo_id": repo.id, "parents": info.parents, "manifest": info.manifest,
                "message": info.message, "author": info.author, "created_at": info.created_at,
                "metadata": info.metadata, "file_count": info.file_count,
                "total_bytes": info.total_bytes,
            })
            add_edges(conn, edges)
            self._move_branch(conn, repo, branch, expected, info.id, "commit", info.author,
                              info.message)

    def _move_branch(
        self, conn: Connection, repo: RepoKey, branch: str, expected: str | None, new: str,
        action: str, actor: str, message: str,
    ) -> None:
        """Compare-and-swap the branch pointer and log the move, inside the caller's transaction."""
        where = {"b_repo": repo.id, "b_branch": branch}
        now = datetime.now(UTC)
        if expected:
            moved = conn.execute(_MOVE_FROM, {**where, "b_expected": expected, "commit_id": new,
                                              "updated_at": now}).rowcount
        else:
            moved = conn.execute(_MOVE_FROM_EMPTY, {**where, "commit_id": new, "updated_at": now}).rowcount
        if moved != 1:
            winner = conn.execute(_BRANCH_HEAD, where).scalar()
            raise Conflict(
                f"branch {repo.name}@{branch} moved to {str(winner)[:12]} while this {action} "
                f"was in progress (expected {str(expected)[:12]}); nothing was changed - "
                "look at the new head and retry",
                repo=repo.name, branch=branch, winner=winner,
            )
        conn.execute(_INSERT_REF_LOG, {
            "repo_id": repo.id, "name": branch, "old_commit": expected, "new_commit": new,
            "action": action, "actor": actor, "message": message, "created_at": now})

    # ------------------------------------------------------------- history
    def log(self, ref: str, limit: int = 100) -> builtins.list[CommitInfo]:
        """Commits reachable from `ref` by first parents, newest first."""
        target = self.resolve(ref)
        out: builtins.list[CommitInfo] = []
        commit = target.commit
        with self.db.connect() as conn:
            while commit is not None and len(out) < limit:
                out.append(commit)
                commit = (self._load_commit(conn, target.repo, commit.parents[0])
                          if commit.parents else None)
        return out

    def history(self, ref: str, limit: int = 100) -> builtins.list[RefLogEntry]:
        """Every move of a branch, newest first."""
        target = self.resolve(ref)
        if target.branch is None:
            raise InvalidArgument(f"{ref} is not a branch; history is kept for branches")
        with self.db.session() as session:
            rows = session.scalars(
                select(RefLogRow).where(RefLogRow.repo_id == target.repo.id,
                                        RefLogRow.name == target.branch)
                .order_by(RefLogRow.id.desc()).limit(limit)).all()
        return [RefLogEntry(r.name, r.old_commit, r.new_commit, r.action, r.actor, r.message,
                            r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC))
                for r in rows]

    # ------------------------------------------------------ branches & tags
    def branch(self, repo: str, name: str, from_ref: str | None = None) -> RepoInfo:
        """Create a branch at `from_ref` (default: the repo's default branch)."""
        check_name(name, "branch name")
        source = self.resolve(from_ref or repo)
        if source.repo.name != repo:
            raise InvalidArgument(f"--from {from_ref} is in another repo than {repo!r}")
        commit_id = source.commit.id if source.commit else None
        try:
            with self.db.session() as session, session.begin():
                self._refuse_taken_name(session, source.repo, name)
                session.add(RefRow(repo_id=source.repo.id, kind="branch", name=name,
                                   commit_id=commit_id))
                session.add(RefLogRow(repo_id=source.repo.id, name=name, new_commit=commit_id,
                                      action="create", actor=self.author,
                                      message=f"branched from {from_ref or repo}"))
        except DBIntegrityError as exc:
            raise AlreadyExists(f"{repo} already has a branch or tag named {name!r}") from exc
        return self.get(repo)

    def _refuse_taken_name(self, session: Session, repo: RepoKey, name: str) -> None:
        # Branches and tags share one namespace: `resolve` tries branches first, so a branch
        # named like a tag would silently hide the tag.
        taken = session.scalar(select(RefRow.kind).where(RefRow.repo_id == repo.id,
                                                         RefRow.name == name))
        if taken is not None:
            raise AlreadyExists(f"{repo.name} already has a {taken} named {name!r}")

    def tag(self, repo: str, name: str, ref: str) -> RepoInfo:
        """Create an immutable tag naming the commit `ref` resolves to."""
        check_name(name, "tag name")
        target = self.resolve(ref)
        if target.repo.name != repo:
            raise InvalidArgument(f"{ref} is in another repo than {repo!r}")
        commit = target.require_commit()
        try:
            with self.db.session() as session, session.begin():
                self._refuse_taken_name(session, target.repo, name)
                session.add(RefRow(repo_id=target.repo.id, kind="tag", name=name,
                                   commit_id=commit.id))
        except DBIntegrityError as exc:
            raise AlreadyExists(f"{repo} already has a tag named {name!r}") from exc
        return self.get(repo)

    def rollback(self, branch_ref: str, to_ref: str, message: str = "") -> tuple[str | None, str]:
        """Point a branch at an earlier commit; logged, and undone by rolling back again.

        Returns (old head, new head). Nothing is copied: the branch pointer moves.
        """
        branch = self.resolve(branch_ref)
        if branch.branch is None or branch.spec.path is not None:
            raise InvalidArgument(f"{branch_ref} is not a branch (`repo@branch`)")
        target = self.resolve(to_ref)
        if target.repo.name != branch.repo.name:
            raise InvalidArgument(f"{to_ref} is in another repo than {branch_ref}")
        new = target.require_commit().id
        old = branch.commit.id if branch.commit else None
        with self.db.begin() as conn:
            self._move_branch(conn, branch.repo, branch.branch, old, new, "rollback",
                              self.author, message or f"rollback to {to_ref}")
        return old, new

    def undo(self, branch_ref: str) -> tuple[str | None, str]:
        """Reverse the latest move of a branch (a commit, rollback or undo)."""
        entries = self.history(branch_ref, limit=1)
        if not entries or entries[0].old_commit is None:
            raise InvalidArgument(f"{branch_ref} has no earlier state to go back to")
        last = entries[0]
        return self.rollback(branch_ref, f"{parse_ref(branch_ref).repo}@{last.old_commit}",
                             message=f"undo {last.action} to {str(last.new_commit)[:12]}")

    def all_commits(self) -> builtins.list[CommitInfo]:
        """Every commit of every repo (the roots of reachability for gc and verify)."""
        with self.db.connect() as conn:
            names = dict(conn.execute(select(_REPOS.c.id, _REPOS.c.name)).all())
            return [_commit_info(r, names[r.repo_id]) for r in conn.execute(select(_COMMITS))]
