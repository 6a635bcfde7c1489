"""Rollback: move an alias back to its previous holder, optionally with its training data.

With `with_data`, every training-data branch recorded on the target version is moved back to
the commit that version was trained on (`DataRepos.rollback`: a logged pointer move, nothing
copied), and the whole change is ONE alias-log entry whose meta lists each branch move with its
old and new commit; `rollback_undo` reverses exactly those moves. Branch moves come first and
the alias last; if a later step fails, the moves already made are reversed before the error
propagates, so a failed rollback leaves nothing half-done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.errors import Conflict, InvalidArgument, NotFound
from threadline.registry import aliases as alias_ops
from threadline.registry.names import check_alias

if TYPE_CHECKING:
    from threadline.registry.records import AliasEntry
    from threadline.registry.registry import ModelRegistry

#: alias-log actions that do not count as "how the alias got its current version"
_REVERSALS = ("rollback", "undo")


def _previous_holder(registry: ModelRegistry, name: str, alias: str, current: int) -> int:
    for entry in registry.alias_history(name, alias):
        if entry.action not in _REVERSALS and entry.new_version == current:
            if entry.old_version is None:
                break
            return entry.old_version
    raise InvalidArgument(f"{name}@{alias} has no earlier version to roll back to; "
                          "name one with --to VERSION")


def _head(registry: ModelRegistry, repo: str, branch: str) -> str | None:
    commit = registry.repos.resolve(f"{repo}@{branch}").commit
    return commit.id if commit else None


def _move_branches(registry: ModelRegistry, moves: list[dict[str, Any]], message: str) -> None:
    """Apply branch moves in order; on failure reverse the ones made, then re-raise."""
    done: list[dict[str, Any]] = []
    try:
        for move in moves:
            head = _head(registry, move["repo"], move["branch"])
            if head != move["old"]:
                raise Conflict(
                    f"branch {move['repo']}@{move['branch']} is at {str(head)[:12]}, not "
                    f"{str(move['old'])[:12]}: it moved since; nothing was changed",
                    repo=move["repo"], branch=move["branch"], winner=head,
                )
            if move["new"] is None:
                raise InvalidArgument(f"cannot move {move['repo']}@{move['branch']} back to "
                                      "an empty branch")
            registry.repos.rollback(f"{move['repo']}@{move['branch']}",
                                    f"{move['repo']}@{move['new']}", message)
            done.append(move)
    except BaseException:
        for move in reversed(done):
            registry.repos.rollback(f"{move['repo']}@{move['branch']}",
                                    f"{move['repo']}@{move['old']}", f"revert: {message}")
        raise


def _alias_move(registry: ModelRegistry, name: str, alias: str, *, expected: int | None,
                new: int | None, action: str, actor: str, message: str, meta: dict[str, Any],
                moves: list[dict[str, Any]]) -> AliasEntry:
    try:
        with registry.db.session() as session, session.begin():
            model = registry.model_row(session, name)
            alias_ops.move(session, model.id, model.name, alias, expected=expected, new=new,
                           action=action, actor=actor, message=message, meta=meta)
    except BaseException:
        undo = [{**m, "old": m["new"], "new": m["old"]} for m in reversed(moves)]
        _move_branches(registry, undo, f"revert: {message}")
        raise
    return registry.alias_history(name, alias, limit=1)[0]


def rollback(
    registry: ModelRegistry, name: str, alias: str = "production", *, to: int | None = None,
    with_data: bool = False, actor: str | None = None, message: str = "",
) -> AliasEntry:
    """Move `alias` back to its previous holder (or to version `to`); see the module doc."""
    check_alias(alias)
    current = registry.get_model(name).aliases.get(alias)
    if current is None:
        raise NotFound(f"model {name!r} has no alias {alias!r} to roll back")
    target_number = to if to is not None else _previous_holder(registry, name, alias, current)
    target = registry.get_version(name, int(target_number))
    if target.version == current:
        raise InvalidArgument(f"{name}@{alias} already points at v{current}")
    text = message or f"rollback {alias} v{current} -> v{target.version}"
    moves: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    if with_data:
        for entry in target.data:
            if not entry.get("branch"):
                skipped.append({"repo": entry["repo"], "commit": entry["commit"],
                                "reason": "not trained from a branch"})
                continue
            head = _head(registry, entry["repo"], entry["branch"])
            if head != entry["commit"]:
                moves.append({"repo": entry["repo"], "branch": entry["branch"], "old": head,
                              "new": entry["commit"]})
        _move_branches(registry, moves, text)
    meta = {"with_data": with_data, "data_moves": moves, "skipped": skipped}
    return _alias_move(registry, name, alias, expected=current, new=target.version,
                       action="rollback", actor=actor or registry.repos.author, message=text,
                       meta=meta, moves=moves)


def rollback_undo(registry: ModelRegistry, name: str, alias: str = "production", *,
                  actor: str | None = None, message: str = "") -> AliasEntry:
    """Reverse the latest rollback of `alias`: the alias and every branch it moved."""
    check_alias(alias)
    history = registry.alias_history(name, alias, limit=1)
    if not history or history[0].action != "rollback":
        raise InvalidArgument(f"the latest change of {name}@{alias} is not a rollback; "
                              "there is nothing to undo")
    last = history[0]
    moves = [{**m, "old": m["new"], "new": m["old"]} for m in reversed(last.meta.get("data_moves", []))]
    text = message or f"undo rollback #{last.id} of {alias}"
    _move_branches(registry, moves, text)
    meta = {"undoes": last.id, "data_moves": moves}
    return _alias_move(registry, name, alias, expected=last.new_version, new=last.old_version,
                       action="undo", actor=actor or registry.repos.author, message=text,
                       meta=meta, moves=moves)

